import random

from discount_audit import audit_round
from discount_calculator import MAX_DISCOUNT, MIN_DISCOUNT, calculate_discount


def test_a_round_tallies_every_draw_of_the_order_service_s_discounts():
    audit = audit_round(500, random.Random(7))

    expected_rng = random.Random(7)
    expected = [calculate_discount(expected_rng) for _ in range(500)]
    assert audit.passed
    assert audit.draws == 500
    assert audit.table == {value: expected.count(value) for value in sorted(set(expected))}
    assert set(audit.table) <= set(range(MIN_DISCOUNT, MAX_DISCOUNT + 1))
    assert audit.summary().startswith("ok: 500 discounts, mean ")


def test_a_draw_outside_the_table_or_not_a_whole_percentage_fails_the_round_naming_it():
    draws = iter([5, MAX_DISCOUNT + 1, 7, 2.5, True, MIN_DISCOUNT - 1])

    audit = audit_round(6, draw=lambda rng: next(draws))

    assert not audit.passed
    assert audit.table == {5: 1, 7: 1}
    assert audit.invalid == (MAX_DISCOUNT + 1, 2.5, True, MIN_DISCOUNT - 1)
    assert audit.summary().startswith(f"FAILED: 4 outside whole {MIN_DISCOUNT}-{MAX_DISCOUNT} % (21, 2.5, True, -1); 6 discounts")
