"""Write the small example datasets under examples/ (deterministic; run from the repository root).

orders_only/: one semicolon-separated ISO-8859-1 export of purchases with customer
number, date (dd.MM.yyyy), amount and store, and nothing else: no customer, product
or rating tables. A few lines are dirty on purpose.

ratings_users/: explicit ratings and a user table in the MovieLens 100K layout:
u.data (user, item, rating, Unix time; tab-separated) and u.user
(user|age|gender|occupation|zip), no headers.

customer_flags/: a CRM export of customers carrying a churn flag and nothing else (no
orders, products or ratings). Churn is planted on age, tenure and sex.

subscription/: a subscription business's customer export with its own attributes
(contract, tenure in months, services, payment method, charges, flags) and a Yes/No
churn flag, in the layout of the public telecom churn exports. Planted: month-to-month
contracts churn more, long tenure churns less, fibre-optic internet and electronic
checks raise churn, charges grow with tenure, total charges are blank for new customers.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from pathlib import Path

ROOT = Path(__file__).resolve().parent
AS_OF = dt.date(2025, 1, 1)
STORES = ("München", "Köln", "Düsseldorf", "Zürich")


def orders_only(rng: random.Random) -> None:
    lines = ["Kundennr;Datum;Betrag;Filiale"]
    for customer in range(1, 301):
        start = AS_OF - dt.timedelta(days=rng.randint(200, 700))
        loyal = rng.random() < 0.55
        end = AS_OF if loyal else start + dt.timedelta(days=rng.randint(30, (AS_OF - start).days))
        rate = rng.uniform(0.4, 1.6) / 30.0 * (1.5 if loyal else 1.0)
        day = start
        while True:
            day += dt.timedelta(days=max(1, int(rng.expovariate(rate))))
            if day >= end:
                break
            amount = round(rng.lognormvariate(3.5, 0.6), 2)
            lines.append(f"K{customer:05d};{day:%d.%m.%Y};{amount:.2f};{rng.choice(STORES)}")
    lines += ["K00001;31.02.2024;10.00;Köln", "K00002;01.03.2024;12.50;Köln;extra", "", "K00003;02.03.2024;abc;Köln"]
    folder = ROOT / "orders_only"
    folder.mkdir(exist_ok=True)
    (folder / "transactions.csv").write_bytes(("\n".join(lines) + "\n").encode("iso-8859-1"))


def ratings_users(rng: random.Random) -> None:
    occupations = ("student", "engineer", "writer", "educator", "retired", "other")
    users, ratings = [], []
    for user in range(1, 201):
        age = rng.randint(16, 70)
        users.append(f"{user}|{age}|{rng.choice('MF')}|{rng.choice(occupations)}|{rng.randint(10000, 99999)}")
        taste = rng.randrange(4)
        for _ in range(rng.randint(10, 40)):
            item = rng.randrange(150) if rng.random() < 0.3 else taste * 40 + rng.randrange(40)
            rating = max(1, min(5, round(rng.gauss(4.0 if item // 40 == taste else 2.5, 0.8))))
            stamp = int(dt.datetime(2023, 1, 1).timestamp()) + rng.randrange(700 * 86_400)
            ratings.append(f"{user}\t{item + 1}\t{rating}\t{stamp}")
    users.append("201|230|M|other|12345")
    folder = ROOT / "ratings_users"
    folder.mkdir(exist_ok=True)
    (folder / "u.user").write_text("\n".join(users) + "\n")
    (folder / "u.data").write_text("\n".join(ratings + ["5\t7\t9\t881250949"]) + "\n")


def customer_flags(rng: random.Random) -> None:
    lines = ["Customer ID,Signed up,Birthday,Sex,City,Churned"]
    for customer in range(1, 1201):
        age = rng.randint(18, 80)
        tenure = rng.randint(30, 1500)
        sex = rng.choice("MF")
        logit = -0.6 + 1.4 * (age < 30) - 1.0 * (age >= 60) + 1.2 * (tenure < 365) + 0.5 * (sex == "M")
        churned = rng.random() < 1 / (1 + math.exp(-logit))
        birthday = AS_OF - dt.timedelta(days=int(age * 365.25) + rng.randint(0, 300))
        signup = AS_OF - dt.timedelta(days=tenure)
        lines.append(f"CRM-{customer:05d},{signup:%Y-%m-%d},{birthday:%Y-%m-%d},{sex},{rng.choice(STORES)},"
                     f"{'yes' if churned else 'no'}")
    lines.append("CRM-09999,2024-02-02,1980-01-01,F,Köln,maybe")
    folder = ROOT / "customer_flags"
    folder.mkdir(exist_ok=True)
    (folder / "customers.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")


def subscription(rng: random.Random, customers: int = 2000) -> None:
    header = ("customerID,gender,SeniorCitizen,Partner,Dependents,tenure,PhoneService,InternetService,Contract,"
              "PaperlessBilling,PaymentMethod,MonthlyCharges,TotalCharges,Churn")
    payments = ("Electronic check", "Mailed check", "Bank transfer (automatic)", "Credit card (automatic)")
    lines = [header]
    for number in range(1, customers + 1):
        contract = rng.choices(("Month-to-month", "One year", "Two year"), (0.55, 0.21, 0.24))[0]
        tenure = min(72, int(rng.expovariate(1 / (12 if contract == "Month-to-month" else 36))))
        internet = rng.choices(("DSL", "Fiber optic", "No"), (0.34, 0.44, 0.22))[0]
        phone = rng.random() < 0.9
        payment = rng.choice(payments)
        senior, partner, dependents = rng.random() < 0.16, rng.random() < 0.48, rng.random() < 0.3
        monthly = round({"No": 20.0, "DSL": 55.0, "Fiber optic": 85.0}[internet] + 5.0 * phone + rng.gauss(0, 6), 2)
        total = "" if tenure == 0 else f"{monthly * tenure * rng.uniform(0.95, 1.05):.2f}"
        logit = (-1.1 + {"Month-to-month": 1.3, "One year": 0.0, "Two year": -1.3}[contract] - 0.035 * tenure
                 + {"Fiber optic": 0.8, "DSL": 0.0, "No": -0.6}[internet] + 0.7 * (payment == "Electronic check")
                 + 0.3 * senior - 0.2 * partner)
        churned = rng.random() < 1 / (1 + math.exp(-logit))

        def yes(flag: bool) -> str:
            return "Yes" if flag else "No"

        payment_field = f'"{payment}"' if "," in payment else payment
        customer_id = f"{number:04d}-{rng.choice('ABCDEFGHJK')}{rng.randint(1000, 9999)}"
        lines.append(f"{customer_id},{rng.choice(('Male', 'Female'))},{int(senior)},{yes(partner)},"
                     f"{yes(dependents)},{tenure},{yes(phone)},{internet},{contract},"
                     f"{yes(rng.random() < 0.6)},{payment_field},{monthly:.2f},{total or ' '},{yes(churned)}")
    folder = ROOT / "subscription"
    folder.mkdir(exist_ok=True)
    (folder / "customers.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    orders_only(random.Random(3))
    ratings_users(random.Random(5))
    customer_flags(random.Random(7))
    subscription(random.Random(11))
