from uvshop_api import roundtrip


def test_a_token_roundtrips_the_normalized_user():
    assert roundtrip("  Alice ") == "alice"
