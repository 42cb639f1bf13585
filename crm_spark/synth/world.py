"""The planted structure of the synthetic shop: groups, categories, names, places."""

from __future__ import annotations

from dataclasses import dataclass

CATEGORIES = (
    "electronics", "books", "fashion", "home", "garden",
    "toys", "sports", "beauty", "grocery", "health",
)
TASTE_DIM = 8
POOL_SIZE = 30
POOL_CANDIDATES = 150
GUMBEL_SCALE = 0.5
# Orders are drawn in windows: before the recent period, the recent period, the horizon after the cutoff.
WINDOWS = 3


@dataclass(frozen=True)
class Group:
    """A latent customer group and the behaviour it drives."""

    share: float
    age_mean: float
    female_share: float
    orders_per_day: float
    basket_lines: float
    churn_logit: float
    category_weights: tuple[float, ...]


GROUPS = (
    # young bargain hunters: electronics, fashion, sports
    Group(0.30, 26, 0.45, 0.010, 1.4, 0.55, (4, 1, 4, 0.5, 0.2, 0.5, 3, 1.5, 1, 0.5)),
    # families: toys, home, grocery
    Group(0.30, 38, 0.60, 0.018, 2.6, -0.45, (1, 1, 1.5, 3, 1, 4, 1, 1, 4, 1)),
    # affluent enthusiasts: books, home, garden, beauty
    Group(0.25, 50, 0.50, 0.026, 1.8, -0.15, (1.5, 4, 1.5, 2.5, 3, 0.5, 1, 2.5, 1, 1)),
    # seniors: garden, health, books
    Group(0.15, 68, 0.55, 0.014, 1.3, 0.35, (0.5, 2.5, 0.5, 1.5, 4, 0.5, 0.3, 1, 2, 4)),
)

# Order status shares; only completed orders count as purchases.
ORDER_STATUS_WEIGHTS = {"completed": 0.93, "cancelled": 0.04, "returned": 0.03}

# Category price level (median unit price).
CATEGORY_PRICE = (180.0, 18.0, 45.0, 60.0, 35.0, 25.0, 55.0, 22.0, 8.0, 15.0)

FIRST_NAMES = (
    "James", "Mary", "John", "Patricia", "Robert", "Jennifer", "Michael", "Linda", "William",
    "Elizabeth", "David", "Barbara", "Richard", "Susan", "Joseph", "Jessica", "Thomas",
    "Sarah", "Charles", "Karen", "Daniel", "Nancy", "Matthew", "Lisa", "Anthony", "Betty",
    "Mark", "Margaret", "Donald", "Sandra", "Steven", "Ashley", "Paul", "Kimberly", "Andrew",
    "Emily", "Joshua", "Donna", "Kenneth", "Michelle", "Kevin", "Carol", "Brian", "Amanda",
    "George", "Melissa", "Timothy", "Deborah", "Ronald", "Stephanie", "Jason", "Rebecca",
)
LAST_NAMES = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez",
    "Martinez", "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor",
    "Moore", "Jackson", "Martin", "Lee", "Perez", "Thompson", "White", "Harris", "Sanchez",
    "Clark", "Ramirez", "Lewis", "Robinson", "Walker", "Young", "Allen", "King", "Wright",
    "Scott", "Torres", "Nguyen", "Hill", "Flores", "Green", "Adams", "Nelson", "Baker",
    "Hall", "Rivera", "Campbell", "Mitchell", "Carter", "Roberts", "Gomez", "Phillips",
)
EMAIL_DOMAINS = ("example.com", "mail.test", "inbox.test", "post.example.org")
CITIES = (
    "New York", "Los Angeles", "Chicago", "Houston", "Phoenix", "Philadelphia", "San Antonio",
    "San Diego", "Dallas", "Austin", "Seattle", "Denver", "Boston", "Portland", "Atlanta",
)
COUNTRY_SPELLINGS = ("US", "US", "US", "USA", "United States", "us")
GENDER_CODES = {"F": ("F", "f", "female", "Female"), "M": ("M", "m", "male", "Male")}
UNKNOWN_GENDER_CODES = ("X", "?", "unknown", "9")
BIRTH_DATE_FORMATS = ("yyyy-MM-dd", "dd.MM.yyyy", "yyyy/MM/dd", "dd MMM yyyy")
