"""Signs a token for a user and checks it back."""

from itsdangerous import URLSafeSerializer
from uvshop_tokens import normalized


def roundtrip(user: str, secret: str = "not-a-secret") -> str:
    serializer = URLSafeSerializer(secret)
    return serializer.loads(serializer.dumps({"user": normalized(user)}))["user"]


def main() -> None:
    print(roundtrip(" Demo "))
