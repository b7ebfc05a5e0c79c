from discount_calculator import discounted


def test_ten_percent_off_rounds_down():
    assert discounted(999, percent=10) == 899
