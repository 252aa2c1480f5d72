"""A synthetic deferred-payment ("buy now, pay later") order dataset with a default label that has signal.

Nested JSON records with missing values, categories of very different frequency, and a label drawn
from a logistic model of the fields, so that a model trained on the features beats chance clearly.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

COUNTRIES = {"DE": 0.35, "NL": 0.15, "AT": 0.12, "CH": 0.1, "FR": 0.1, "SE": 0.08, "PL": 0.06, "DK": 0.04}
METHODS = {"invoice": 0.5, "installments": 0.25, "direct_debit": 0.2, "pay_in_30": 0.05}
DEVICES = {"mobile": 0.55, "desktop": 0.35, "tablet": 0.1}
DOMAINS = {"gmail.com": 0.4, "web.de": 0.2, "gmx.de": 0.15, "outlook.com": 0.15, "tempmail.io": 0.1}


def _pick(rng: random.Random, weights: dict[str, float]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def make_order(rng: random.Random, index: int) -> dict[str, Any]:
    age = rng.randint(18, 80)
    tenure = int(rng.expovariate(1 / 400))
    previous = int(rng.expovariate(1 / 6))
    amount = round(rng.lognormvariate(4.2, 0.8), 2)
    method = _pick(rng, METHODS)
    device = _pick(rng, DEVICES)
    domain = _pick(rng, DOMAINS)
    hour = rng.randint(0, 23)
    country = _pick(rng, COUNTRIES)
    # The risk the label is drawn from: young, new, night-time, large baskets and throwaway e-mails.
    logit = (-2.2 + 0.9 * (age < 25) - 0.004 * min(tenure, 1000) + 0.45 * math.log1p(amount / 100)
             - 0.12 * min(previous, 10) + 0.8 * (hour < 6) + 1.3 * (domain == "tempmail.io")
             + 0.5 * (method == "pay_in_30") - 0.4 * (method == "direct_debit") + 0.3 * (country == "PL"))
    default = int(rng.random() < 1 / (1 + math.exp(-logit)))
    order: dict[str, Any] = {
        "order_id": f"o-{index:07d}",
        "amount": amount,
        "items": rng.randint(1, 8),
        "hour": hour,
        "customer": {
            "age": age,
            "tenure_days": tenure,
            "previous_orders": previous,
            "country": country,
            "email_domain": domain,
        },
        "payment": {"method": method},
        "device": device,
        "default": default,
    }
    # Missing values, as real order streams have them.
    if rng.random() < 0.08:
        order["customer"]["age"] = None
    if rng.random() < 0.05:
        del order["device"]
    if rng.random() < 0.03:
        order["customer"]["tenure_days"] = None
    return order


def make_orders(count: int, seed: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [make_order(rng, index) for index in range(count)]


def write_jsonl(records: list[dict[str, Any]], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path
