"""Users: signs a session token."""

from itsdangerous import URLSafeSerializer


def token(user: str, secret: str = "not-a-secret") -> str:
    return URLSafeSerializer(secret).dumps({"user": user})


def main() -> None:
    print(token("demo"))
