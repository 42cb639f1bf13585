"""A starting ``sources:`` config for a user's own files, from what a sample of each file shows.

:func:`sniff` reads the first rows of a file (without Spark) and detects its format,
encoding, delimiter, header and columns; :func:`propose` maps its columns onto a
source's canonical columns from their names and values, with date patterns and the
leftover columns; :func:`render` writes the YAML, with a ``check:`` comment wherever a
guess is not certain.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from crm_spark.schemas import (
    AGE,
    BIRTH_DATE,
    CANONICAL_COLUMNS,
    CATEGORY,
    CITY,
    COUNTRY,
    CUSTOMER_ID,
    EMAIL,
    FIRST_NAME,
    GENDER,
    LABEL,
    LAST_NAME,
    NAME,
    ORDER_ID,
    ORDER_TS,
    PHONE,
    PRICE,
    PRODUCT_ID,
    QUANTITY,
    RATED_TS,
    RATING,
    REQUIRED_COLUMNS,
    SIGNUP_TS,
    STATUS,
    UNIT_PRICE,
    UPDATED_TS,
    attribute_column,
    looks_personal,
)

SAMPLE_BYTES = 1 << 20
SAMPLE_ROWS = 2000
# Words (of a snake_case column name) that name each canonical column, most specific first.
SYNONYMS: dict[str, tuple[str, ...]] = {
    CUSTOMER_ID: ("customer_id", "customerid", "cust_id", "client_id", "user_id", "userid", "member_id",
                  "account_id", "customer", "user", "client", "member", "buyer_id", "shopper_id", "customer_no",
                  "customer_number", "kundennr", "kunden_nr", "kundennummer", "kunde", "client_no"),
    PRODUCT_ID: ("product_id", "productid", "item_id", "itemid", "sku", "stock_code", "stockcode", "article_id",
                 "movie_id", "movieid", "asin", "product", "item", "article", "movie"),
    ORDER_ID: ("order_id", "orderid", "invoice_no", "invoiceno", "invoice", "invoice_id", "transaction_id",
               "receipt_id", "order_number", "order_no", "basket_id", "bestellnr", "rechnungsnr", "beleg"),
    QUANTITY: ("quantity", "qty", "units", "count", "number_of_items", "menge", "anzahl"),
    UNIT_PRICE: ("unit_price", "unitprice", "price", "item_price", "unit_cost", "amount", "total", "revenue",
                 "sales", "value", "order_value", "spend", "betrag", "preis", "umsatz", "summe"),
    ORDER_TS: ("order_ts", "order_date", "invoice_date", "invoicedate", "purchase_date", "transaction_date",
               "timestamp", "date", "datetime", "created_at", "ordered_at", "time", "datum"),
    STATUS: ("status", "order_status", "state"),
    RATING: ("rating", "score", "stars", "rate", "review_score"),
    RATED_TS: ("rated_ts", "rated_at", "rating_date", "review_date", "timestamp", "date", "time"),
    FIRST_NAME: ("first_name", "firstname", "given_name", "forename"),
    LAST_NAME: ("last_name", "lastname", "surname", "family_name"),
    EMAIL: ("email", "e_mail", "email_address", "mail"),
    PHONE: ("phone", "phone_number", "telephone", "mobile", "tel"),
    GENDER: ("gender", "sex", "geschlecht"),
    BIRTH_DATE: ("birth_date", "birthdate", "date_of_birth", "dob", "birthday", "geburtsdatum"),
    CITY: ("city", "town", "ort", "stadt"),
    COUNTRY: ("country", "country_code", "nation"),
    SIGNUP_TS: ("signup_ts", "signup_date", "signed_up", "registered_at", "registration_date", "created_at",
                "joined", "customer_since"),
    UPDATED_TS: ("updated_ts", "updated_at", "last_modified", "modified_at"),
    AGE: ("age",),
    LABEL: ("label", "churn", "churned", "exited", "target"),
    NAME: ("name", "title", "product_name", "description"),
    CATEGORY: ("category", "genre", "genres", "department", "product_category", "type"),
    PRICE: ("price", "list_price", "unit_price"),
}
# Words in a file name that say which source it is.
SOURCE_WORDS: dict[str, tuple[str, ...]] = {
    "ratings": ("rating", "review", "score", "u.data", ".inter"),
    "orders": ("order", "transaction", "purchase", "invoice", "sale", "retail", "basket", "line"),
    "products": ("product", "item", "article", "catalog", "catalogue", "movie", "sku"),
    "customers": ("customer", "user", "client", "member", "account", "people", "person", "churn"),
}
# Date and time patterns tried on text values: Spark's pattern and the same for Python's strptime.
DATE_PATTERNS: tuple[tuple[str, str], ...] = (
    ("yyyy-MM-dd HH:mm:ss", "%Y-%m-%d %H:%M:%S"),
    ("yyyy-MM-dd'T'HH:mm:ss", "%Y-%m-%dT%H:%M:%S"),
    ("yyyy-MM-dd HH:mm", "%Y-%m-%d %H:%M"),
    ("yyyy-MM-dd", "%Y-%m-%d"),
    ("yyyy/MM/dd HH:mm:ss", "%Y/%m/%d %H:%M:%S"),
    ("yyyy/MM/dd", "%Y/%m/%d"),
    ("dd/MM/yyyy HH:mm:ss", "%d/%m/%Y %H:%M:%S"),
    ("dd/MM/yyyy HH:mm", "%d/%m/%Y %H:%M"),
    ("dd/MM/yyyy", "%d/%m/%Y"),
    ("MM/dd/yyyy HH:mm:ss", "%m/%d/%Y %H:%M:%S"),
    ("MM/dd/yyyy HH:mm", "%m/%d/%Y %H:%M"),
    ("MM/dd/yyyy", "%m/%d/%Y"),
    ("d/M/yyyy H:mm", "%d/%m/%Y %H:%M"),
    ("M/d/yyyy H:mm", "%m/%d/%Y %H:%M"),
    ("d/M/yyyy", "%d/%m/%Y"),
    ("M/d/yyyy", "%m/%d/%Y"),
    ("dd.MM.yyyy HH:mm", "%d.%m.%Y %H:%M"),
    ("dd.MM.yyyy", "%d.%m.%Y"),
    ("dd-MM-yyyy", "%d-%m-%Y"),
    ("yyyyMMdd", "%Y%m%d"),
)
# Spark reads these without a pattern (ISO dates and times).
ISO_PATTERNS = frozenset({"yyyy-MM-dd HH:mm:ss", "yyyy-MM-dd'T'HH:mm:ss", "yyyy-MM-dd HH:mm", "yyyy-MM-dd"})
GENDER_VALUES = frozenset({"m", "f", "male", "female", "w", "d", "x", "other", "man", "woman"})
TIME_COLUMNS = (ORDER_TS, RATED_TS, SIGNUP_TS, UPDATED_TS, BIRTH_DATE)
DELIMITERS = ",;\t|"
EPOCH_RANGE = (315_532_800, 4_102_444_800)  # 1980 to 2100, in Unix seconds


class ScaffoldError(ValueError):
    """A file cannot be read as a source (missing, empty, or of an unknown layout)."""


@dataclass
class Sniffed:
    """What the first rows of a file show: its layout and a sample of its values (as text)."""

    path: Path
    format: str
    encoding: str = "UTF-8"
    delimiter: str = ","
    header: bool = True
    columns: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def values(self, column: str) -> list[str]:
        """Return the non-blank sampled values of ``column``."""
        i = self.columns.index(column)
        return [row[i].strip() for row in self.rows if i < len(row) and row[i] is not None and row[i].strip()]


@dataclass
class Proposal:
    """A source's proposed config: the mapping, patterns, constants, attributes and what is unsure."""

    source: str
    sniffed: Sniffed
    columns: dict[str, str] = field(default_factory=dict)  # canonical -> the file's column
    formats: dict[str, str] = field(default_factory=dict)
    constants: dict[str, str] = field(default_factory=dict)
    attributes: list[str] = field(default_factory=list)
    unsure: dict[str, str] = field(default_factory=dict)  # a key of the output -> why it is a guess
    left_out: dict[str, str] = field(default_factory=dict)  # a column of the file -> why it is not used
    newest: dt.datetime | None = None


def snake(name: str) -> str:
    """Return a column name in snake_case (``InvoiceDate`` -> ``invoice_date``)."""
    return attribute_column(name).removeprefix("a_")


def sniff(path: str | Path) -> Sniffed:
    """Detect a file's format, encoding, delimiter, header and columns from its first rows.

    Raises:
        ScaffoldError: the file is missing, empty or a folder.
    """
    path = Path(path)
    if not path.is_file():
        raise ScaffoldError(f"{path}: no such file")
    with path.open("rb") as handle:
        data = handle.read(SAMPLE_BYTES)
    if path.suffix.lower() == ".parquet" or data[:4] == b"PAR1":
        return _sniff_parquet(path)
    if not data.strip():
        raise ScaffoldError(f"{path}: the file is empty")
    cut = len(data) == SAMPLE_BYTES  # the sample ends inside the file
    data = data.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte-order mark, which ingest drops too
    try:
        text, encoding = data.decode("utf-8"), "UTF-8"
    except UnicodeDecodeError as error:
        if cut and error.start > len(data) - 4:
            text, encoding = data[:error.start].decode("utf-8"), "UTF-8"  # a character cut by the sample's end
        else:
            text, encoding = data.decode("iso-8859-1"), "ISO-8859-1"
    if cut:
        text = text[:text.rfind("\n") + 1] or text  # whole lines only
    if text.lstrip()[:1] == "{" or path.suffix.lower() in (".json", ".jsonl", ".ndjson"):
        return _sniff_json(path, text, encoding)
    return _sniff_csv(path, text, encoding)


def _sniff_parquet(path: Path) -> Sniffed:
    import pyarrow.parquet as pq

    table = pq.ParquetFile(path).read_row_group(0).slice(0, SAMPLE_ROWS)
    columns = table.column_names
    rows = [[None if v is None else str(v) for v in row.values()] for row in table.to_pylist()]
    return Sniffed(path, "parquet", columns=columns, rows=rows)


def _sniff_json(path: Path, text: str, encoding: str) -> Sniffed:
    records, notes = [], []
    for number, line in enumerate(text.splitlines()[:SAMPLE_ROWS], 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            notes.append(f"line {number} is not one JSON object; ingest quarantines such lines")
            continue
        if isinstance(record, dict):
            records.append(record)
    if not records:
        raise ScaffoldError(f"{path}: no JSON object per line found (JSON lines are one object per line)")
    columns = list(dict.fromkeys(key for record in records for key in record))
    rows = [[None if r.get(c) is None else str(r.get(c)) for c in columns] for r in records]
    return Sniffed(path, "json", encoding, columns=columns, rows=rows, notes=notes)


def _sniff_csv(path: Path, text: str, encoding: str) -> Sniffed:
    lines, notes = text.splitlines()[:SAMPLE_ROWS + 1], []
    sample = "\n".join(lines[:200])
    try:
        delimiter = csv.Sniffer().sniff(sample, delimiters=DELIMITERS).delimiter
    except csv.Error:
        counts = {d: min(line.count(d) for line in lines[:50] if line.strip()) for d in DELIMITERS}
        delimiter = max(counts, key=counts.get)
        if not counts[delimiter]:
            notes.append("no delimiter found: read as one column")
    rows = [row for row in csv.reader(io.StringIO("\n".join(lines)), delimiter=delimiter) if row]
    width = max(len(row) for row in rows)
    header = _has_header(rows)
    if header:
        columns = [name.strip() or f"column_{i + 1}" for i, name in enumerate(rows[0])]
        rows = rows[1:]
    else:
        columns = [f"column_{i + 1}" for i in range(width)]
    return Sniffed(path, "csv", encoding, delimiter, header, columns, rows, notes)


def _has_header(rows: list[list[str]]) -> bool:
    """Return whether the first row names columns: no number or date in it where the rows below have them."""
    first, rest = rows[0], rows[1:51]
    if not rest:
        return not any(_number(v) is not None for v in first)
    for i, value in enumerate(first):
        below = [row[i] for row in rest if i < len(row) and row[i].strip()]
        if below and _number(value) is None and all(_number(v) is not None for v in below):
            return True
    return all(_number(v) is None and v.strip() for v in first) and len(set(first)) == len(first)


def _number(value: str | None) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def date_pattern(values: list[str]) -> tuple[str | None, list[str], dt.datetime | None]:
    """Return the first pattern that reads every value, the other patterns that do too, and the newest value read.

    ``epoch`` is returned for integers in the range of Unix seconds.
    """
    if values and all(v.isdigit() and EPOCH_RANGE[0] <= int(v) <= EPOCH_RANGE[1] for v in values):
        return "epoch", [], dt.datetime.fromtimestamp(max(int(v) for v in values), dt.timezone.utc).replace(tzinfo=None)
    texts = [v[:19] if "T" in v else v for v in values]  # ISO times: no fraction or zone
    fits = []
    for spark_pattern, python_pattern in DATE_PATTERNS:
        if not all(_shape(spark_pattern).fullmatch(text) for text in texts):
            continue
        try:
            parsed = [dt.datetime.strptime(text, python_pattern) for text in texts]
        except ValueError:
            continue
        fits.append((spark_pattern, max(parsed) if parsed else None))
    if not values or not fits:
        return None, [], None
    return fits[0][0], [p for p, _ in fits[1:]], fits[0][1]


def _shape(spark_pattern: str) -> re.Pattern[str]:
    """Return a regex of the text a Spark pattern reads: ``dd`` two digits, ``d`` one or two, and so on."""
    parts = re.findall(r"yyyy|MM|dd|HH|mm|ss|M|d|H|'T'|.", spark_pattern)
    digits = {"yyyy": r"\d{4}", "MM": r"\d{2}", "dd": r"\d{2}", "HH": r"\d{2}", "mm": r"\d{2}", "ss": r"\d{2}",
              "M": r"\d{1,2}", "d": r"\d{1,2}", "H": r"\d{1,2}", "'T'": "T"}
    return re.compile("".join(digits.get(part, re.escape(part)) for part in parts))


def guess_source(sniffed: Sniffed) -> tuple[str, bool]:
    """Return the source a file most likely holds and whether the guess is sure (from its name)."""
    name = sniffed.path.name.lower()
    for source, words in SOURCE_WORDS.items():
        if any(word in name for word in words):
            return source, True
    names = {snake(c) for c in sniffed.columns}
    if names & set(SYNONYMS[RATING]) and not names & set(SYNONYMS[QUANTITY]):
        return "ratings", False
    if names & (set(SYNONYMS[QUANTITY]) | set(SYNONYMS[ORDER_ID])):
        return "orders", False
    if names & (set(SYNONYMS[GENDER]) | set(SYNONYMS[EMAIL]) | set(SYNONYMS[AGE]) | set(SYNONYMS[BIRTH_DATE])):
        return "customers", False
    if names & set(SYNONYMS[CATEGORY]):
        return "products", False
    return "orders", False


def propose(sniffed: Sniffed, source: str | None = None) -> Proposal:
    """Map a file's columns onto a source's canonical columns by name, then by value.

    Args:
        sniffed: the file, as :func:`sniff` read it.
        source: the source it holds; guessed from its name and columns when None.
    """
    sure = True
    if source is None:
        source, sure = guess_source(sniffed)
    proposal = Proposal(source, sniffed)
    if not sure:
        proposal.unsure["source"] = f"guessed '{source}' from the columns; rename the section if the file holds another"
    canonical = CANONICAL_COLUMNS[source]
    free = list(sniffed.columns)
    # Names first: an exact canonical name, then the synonyms in order of specificity.
    for target in canonical:
        for word in SYNONYMS.get(target, (target,)):
            match = next((c for c in free if snake(c) == word or snake(c).replace("_", "") == word), None)
            if match is not None:
                proposal.columns[target] = match
                free.remove(match)
                if snake(match) != target and word not in SYNONYMS.get(target, ())[:2]:
                    proposal.unsure[f"columns.{target}"] = f"guessed from the name '{match}'"
                break
    _map_by_values(proposal, free, every=not sniffed.header)
    for target in TIME_COLUMNS:
        column = proposal.columns.get(target)
        if column is None:
            continue
        pattern, others, newest = date_pattern(sniffed.values(column))
        if pattern is None:
            proposal.unsure[f"formats.{target}"] = (f"no known date pattern reads '{column}'; add its pattern "
                                                    "(Spark datetime pattern) under formats")
            continue
        if pattern not in ISO_PATTERNS:
            proposal.formats[target] = pattern
        if others and pattern not in ISO_PATTERNS:
            proposal.unsure[f"formats.{target}"] = f"the sample also fits {', '.join(others)}"
        if target in (ORDER_TS, RATED_TS) and newest:
            proposal.newest = max(filter(None, (proposal.newest, newest)))
    for required in REQUIRED_COLUMNS[source]:
        if required in proposal.columns:
            continue
        if required == QUANTITY:
            proposal.constants[QUANTITY] = "1"
            proposal.unsure[f"constants.{QUANTITY}"] = "no quantity column: every line counts once"
        else:
            proposal.unsure[f"columns.{required}"] = "required and not found: map it to a column of the file"
    for column in free:
        if source == "customers" and not looks_personal(column):
            proposal.attributes.append(column)
        else:
            proposal.left_out[column] = ("personal data stays out of features" if looks_personal(column)
                                         else f"no canonical column of {source} matches")
    return proposal


def _map_by_values(proposal: Proposal, free: list[str], every: bool) -> None:
    """Map columns the names left free by what their values look like.

    Args:
        proposal: the proposal so far; its mapping grows.
        free: the file's columns not mapped yet; mapped ones are removed.
        every: map onto any canonical column (a file without header); otherwise only onto
            required columns still missing.
    """
    sniffed = proposal.sniffed
    canonical = CANONICAL_COLUMNS[proposal.source] if every else REQUIRED_COLUMNS[proposal.source]
    for column in list(free):
        values = sniffed.values(column)
        numbers = [_number(v) for v in values]
        if not values:
            continue
        target = None
        if date_pattern(values)[0] is not None:
            target = next((t for t in TIME_COLUMNS if t in canonical and t not in proposal.columns), None)
        elif GENDER in canonical and GENDER not in proposal.columns and {v.lower() for v in values} <= GENDER_VALUES:
            target = GENDER
        elif all(n is not None for n in numbers):
            whole = all(float(n).is_integer() for n in numbers)
            plausible_ages = sum(0 < n <= 120 for n in numbers) / len(numbers)  # a few typos are allowed
            if AGE in canonical and AGE not in proposal.columns and whole and plausible_ages >= 0.95 \
                    and CUSTOMER_ID in proposal.columns:
                target = AGE
            elif RATING in canonical and RATING not in proposal.columns and 0 <= min(numbers) and max(numbers) <= 10 \
                    and len(set(numbers)) <= 20 and {CUSTOMER_ID, PRODUCT_ID} <= set(proposal.columns):
                target = RATING
            elif whole:
                target = next((t for t in (CUSTOMER_ID, PRODUCT_ID, ORDER_ID, QUANTITY) if t in canonical
                               and t not in proposal.columns), None)
            else:
                target = next((t for t in (UNIT_PRICE, PRICE) if t in canonical and t not in proposal.columns), None)
        else:
            target = next((t for t in (CUSTOMER_ID, PRODUCT_ID, ORDER_ID) if t in canonical
                           and t not in proposal.columns), None)
        if target:
            proposal.columns[target] = column
            proposal.unsure[f"columns.{target}"] = (f"the file has no header: guessed from the values of {column}"
                                                    if every else f"guessed from the values of '{column}'")
            free.remove(column)


def render(proposals: list[Proposal], raw_dir: Path, config_dir: Path) -> str:
    """Return a config's YAML text for the proposals, with ``check:`` comments where a guess is unsure.

    Args:
        proposals: one per source (each source once).
        raw_dir: the folder the files are in (``paths.raw_dir``).
        config_dir: the folder the config will be written to (relative paths are against the working
            directory, so they are written absolute when they leave it).
    """
    newest = max((p.newest for p in proposals if p.newest), default=None)
    as_of = (newest.date() + dt.timedelta(days=1)) if newest else dt.date.today()
    why_date = (f"the day after the newest order or rating in the sample ({newest:%Y-%m-%d})" if newest
                else "today: no order or rating dates were read")
    cwd = Path.cwd().resolve()
    roots = ["."] if raw_dir.resolve().is_relative_to(cwd) else [".", str(raw_dir.resolve())]
    raw = str(raw_dir.resolve().relative_to(cwd)) if roots == ["."] else str(raw_dir.resolve())
    lines = [
        f"# Written by crm-spark init from {', '.join(p.sniffed.path.name for p in proposals)}.",
        "# Read every line marked 'check:', then: crm-spark config validate --config THIS_FILE",
        f"as_of_date: {as_of.isoformat()}  # check: results are computed as of this date; {why_date}",
        "churn_horizon_days: 90",
        "",
        "paths:",
        f"  raw_dir: {_yaml(raw)}",
        "  lakehouse_dir: lakehouse",
        "  checkpoint_dir: data/checkpoints",
        f"  allowed_roots: [{', '.join(_yaml(r) for r in roots)}]",
        "",
        "sources:",
    ]
    for proposal in proposals:
        lines += _render_source(proposal, raw_dir)
    return "\n".join(lines) + "\n"


def _render_source(proposal: Proposal, raw_dir: Path) -> list[str]:
    sniffed, unsure = proposal.sniffed, proposal.unsure

    def note(key: str) -> str:
        return f"  # check: {unsure[key]}" if key in unsure else ""

    path = sniffed.path.resolve()
    relative = str(path.relative_to(raw_dir.resolve())) if path.is_relative_to(raw_dir.resolve()) else str(path)
    lines = [f"  {proposal.source}:{note('source')}", f"    path: {_yaml(relative)}", f"    format: {sniffed.format}"]
    if sniffed.format == "csv":
        lines += [f"    header: {str(sniffed.header).lower()}", f"    delimiter: {_yaml(sniffed.delimiter)}"]
        if not sniffed.header:
            named = {column: target for target, column in proposal.columns.items()}
            guessed = ", ".join(named[c] for c in sniffed.columns if c in named)
            lines.append(f"    fields: [{', '.join(_yaml(named.get(c, c)) for c in sniffed.columns)}]"
                         f"  # check: no header; {guessed or 'no column'} guessed from the values")
    if sniffed.format != "parquet":
        lines.append(f"    encoding: {sniffed.encoding}"
                     + ("  # check: not UTF-8; read as Latin-1" if sniffed.encoding != "UTF-8" else ""))
    for text in sniffed.notes:
        lines.append(f"    # check: {text}")
    renamed = {k: v for k, v in proposal.columns.items() if v != k and sniffed.header}
    if renamed:
        lines.append("    columns:  # canonical column: the file's column")
        lines += [f"      {k}: {_yaml(v)}{note(f'columns.{k}')}" for k, v in renamed.items()]
    lines += [f"    # check: columns.{k[8:]}: {why}" for k, why in unsure.items()
              if k.startswith("columns.") and k[8:] not in proposal.columns]
    if proposal.formats or any(k.startswith("formats.") for k in unsure):
        lines.append("    formats:")
        lines += [f"      {k}: [{_yaml(v)}]{note(f'formats.{k}')}" for k, v in proposal.formats.items()]
        lines += [f"      # check: {k[8:]}: {why}" for k, why in unsure.items()
                  if k.startswith("formats.") and k[8:] not in proposal.formats]
    if proposal.constants:
        lines.append("    constants:")
        lines += [f"      {k}: {_yaml(v)}{note(f'constants.{k}')}" for k, v in proposal.constants.items()]
    if proposal.attributes:
        lines.append("    attributes:  # further columns, each a feature; a type may be given (numeric, categorical, "
                     "boolean, date)")
        lines += [f"      {_yaml(a)}:" for a in proposal.attributes]
    for column, why in proposal.left_out.items():
        lines.append(f"    # left out: {column} ({why})")
    return lines


def _yaml(text: str) -> str:
    """Return ``text`` as a YAML scalar, quoted when plain YAML would read it otherwise."""
    if re.fullmatch(r"[A-Za-z_./][A-Za-z0-9_./ -]*", text) and text.strip() == text \
            and text.lower() not in ("yes", "no", "true", "false", "on", "off", "null", "y", "n"):
        return text
    return json.dumps(text)
