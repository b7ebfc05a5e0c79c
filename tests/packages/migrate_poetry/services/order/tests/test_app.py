from shop_order.app import create_app


def test_a_price_is_discounted():
    response = create_app().test_client().get("/price/1000")
    assert response.get_json() == {"cents": 1000, "discounted": 900}
