"""Every mistake in a command line, a config or the inputs it names: one line, exit code 2, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from crm_spark import cli
from crm_spark.synth.generate import GENERATED_MARKER, claim_raw_dir, raw_dir_problem

ROOT = Path(__file__).resolve().parents[1]
LOCAL = str(ROOT / "conf" / "local.yaml")
GOOD = "as_of_date: 2025-01-01\npaths: {raw_dir: raw, lakehouse_dir: lake, checkpoint_dir: ckpt, truth_dir: truth}\n"

# A file of each kind of broken config, written under the test's folder.
FILES = {
    "indent.yaml": GOOD.replace("paths: {", "paths:\n  raw_dir: raw\n lakehouse_dir: lake\nx: {"),
    "duplicate.yaml": GOOD + "train: {seed: 1, label: column}\ntrain: {seed: 2}\n",
    "latin1.yaml": None,  # written as bytes below
    "list.yaml": "- as_of_date: 2025-01-01\n",
    "month13.yaml": GOOD.replace("2025-01-01", "2025-13-01"),
    "kmin.yaml": GOOD + "train: {segment_k_min: 6, segment_k_max: 3}\n",
}
# (arguments, what the one line must say); {d} is the test's folder.
CASES = [
    (["ingest", "--config", "{d}/indent.yaml"], "indent.yaml:4:2: invalid YAML"),
    (["ingest", "--config", "{d}/duplicate.yaml"], "duplicate.yaml:4:1: invalid YAML: key 'train' appears twice"),
    (["ingest", "--config", "{d}/latin1.yaml"], "latin1.yaml:3: config file is not UTF-8 (byte 0xfc"),
    (["ingest", "--config", "{d}/list.yaml"], "must hold a mapping at the top level"),
    (["ingest", "--config", "{d}"], "is a folder; give a YAML file"),
    (["ingest", "--config", "{d}/absent.yaml"], "config file not found"),
    (["ingest", "--config", "{d}/month13.yaml"], "'as_of_date' is not a calendar date: '2025-13-01'"),
    (["ingest", "--config", LOCAL, "--as-of-date", "2025-02-30"], "is not a calendar date: '2025-02-30'"),
    (["ingest", "--config", LOCAL, "--as-of-date", ""], "--as-of-date is empty"),
    (["ingest", "--config", LOCAL, "--set", "prepare.phone_national_pattern=[0-9"],
     "--set prepare.phone_national_pattern:1:5: invalid YAML"),
    (["ingest", "--config", LOCAL, "--set", 'prepare.phone_national_pattern="[0-9"'],
     "'prepare.phone_national_pattern' is not a valid regular expression"),
    (["ingest", "--config", LOCAL, "--set", "ingest.rating_max=0.5"], "'ingest.rating_max' (0.5) must exceed"),
    (["ingest", "--config", LOCAL, "--set", "train.clv_margin=.nan"], "'train.clv_margin' must be finite number"),
    (["ingest", "--config", LOCAL, "--set", "recommend.tune_blend_shares=[.nan]"],
     "'recommend.tune_blend_shares[0]' must be finite number"),
    (["ingest", "--config", LOCAL, "--set", "spark.master=lokal[*]"], "did you mean 'local[*]'?"),
    (["ingest", "--config", LOCAL, "--set", "spark.log_level=VERBOSE"], "'spark.log_level' must be one of"),
    (["ingest", "--config", LOCAL, "--log-level", "VERBOSE"], "unknown choice 'VERBOSE'"),
    (["ingest", "--config", LOCAL, "--set", "privacy.secret_file=/etc/shadow"],
     "'privacy.secret_file' (/etc/shadow) is outside the allowed roots"),
    (["ingest", "--config", LOCAL, "--set", "quality.expectations=['customers.emial.valid_share >= 0.9']"],
     "source 'customers' has no column 'emial'; did you mean 'email'?"),
    (["ingest", "--config", LOCAL, "--set", "quality.expectations=['payments.amount.null_share <= 0']"],
     "no source is named 'payments'"),
    (["ingest", "--config", LOCAL, "--set", "generate.customerz=1"],
     "unknown config key 'generate.customerz'; did you mean 'customers'?"),
    (["ingest", "--config", LOCAL, "--set", "train.label=colum"], "did you mean 'column'?"),
    (["ingest", "--config", LOCAL, "--set", "generate.customers"], "must look like key.sub=value"),
    (["ingest", "--config", "{d}/kmin.yaml"], "'train.segment_k_min' must not exceed"),
    (["ingets"], "unknown command 'ingets'; did you mean 'ingest'?"),
    (["ingest", "--confg", LOCAL], "unrecognized arguments: --confg"),
    (["pipeline", "--config", LOCAL, "--from", "featurs"], "--from: unknown stage 'featurs'; did you mean 'features'?"),
    (["pipeline", "--config", LOCAL, "--from", "train", "--to", "features"], "--from train comes after --to features"),
    (["pipeline", "--config", LOCAL, "--stages", "ingest,trian"], "did you mean 'train'?"),
    (["pipeline", "--config", LOCAL, "--stages", "ingest", "--to", "train"], "give --stages or --from/--to, not both"),
    (["generate", "--config", "{d}/good.yaml", "--set", "paths.truth_dir=null"], "generate needs paths.truth_dir"),
    (["generate", "--config", "{d}/good.yaml", "--set", "paths.raw_dir={d}/mine"],
     "holds files generate did not write"),
    (["next_day", "--config", "{d}/good.yaml", "--set", "paths.raw_dir={d}/mine"], "was not written by generate"),
    (["erase", "--config", "{d}/good.yaml"], "no customer ids given"),
    (["ingest", "--config", "{d}/good.yaml"], "sources.customers.path: nothing at {d}/raw/customers"),
    (["quality-gate", "--config", "{d}/good.yaml"], "quality_gate checks quality.expectations, and the config lists"),
    (["show", "--config", "{d}/good.yaml", "gold.chrn_scores"], "did you mean 'gold.churn_scores'?"),
    (["show", "--config", "{d}/good.yaml", "customers"], "say bronze.customers or silver.customers"),
    (["runs", "--config", "{d}/good.yaml", "--limit", "0"], "--limit must be at least 1"),
    (["init", "--from", "{d}/absent.csv", "--output", "{d}/new.yaml"], "absent.csv: no such file"),
    (["init", "--from", "{d}/good.yaml", "--output", "{d}/good.yaml"], "good.yaml exists; give --force"),
]


@pytest.fixture
def folder(tmp_path, monkeypatch, restore_logging):
    """A folder with the broken configs, a good one, and a raw folder holding a user's file; the working directory."""
    for name, text in FILES.items():
        if text is not None:
            (tmp_path / name).write_text(text, encoding="utf-8")
    (tmp_path / "latin1.yaml").write_bytes(GOOD.encode() + "# Kundenmenü\n".encode("iso-8859-1"))
    (tmp_path / "good.yaml").write_text(GOOD, encoding="utf-8")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "orders.csv").write_text("id,amount\n1,2\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_there_are_at_least_25_cases():
    assert len(CASES) >= 25


def exit_code(argv: list[str]) -> int:
    """Return the exit code of ``crm-spark ARGV``, whether main returns it or argparse exits with it."""
    try:
        return cli.main(argv)
    except SystemExit as stop:
        return stop.code


@pytest.mark.parametrize(("argv", "message"), CASES, ids=[" ".join(a)[:60] for a, _ in CASES])
def test_mistake_is_one_line_with_exit_code_2(folder, capsys, argv, message):
    code = exit_code([a.replace("{d}", str(folder)) for a in argv])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2
    assert len(err) == 1 and "Traceback" not in err[0], err
    assert err[0].startswith("crm-spark") and message.replace("{d}", str(folder)) in err[0], err[0]
    assert not (folder / "mine" / GENERATED_MARKER).exists()  # a refused generate claims nothing


def test_missing_java_is_one_line_saying_what_to_install(tmp_path):
    (tmp_path / "c.yaml").write_text(GOOD, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in ("JAVA_HOME", "PYSPARK_GATEWAY_PORT")}
    env["PATH"] = str(Path(sys.executable).parent)  # the virtualenv's python, no java
    done = subprocess.run([sys.executable, "-m", "crm_spark.cli", "features", "--config", "c.yaml"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)
    err = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, done.stderr
    assert len(err) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "no java on the PATH and JAVA_HOME is not set" in err[0] and "install a JDK" in err[0]


def test_generate_writes_only_into_a_folder_it_claimed(tmp_path):
    raw, truth = tmp_path / "raw", tmp_path / "truth"
    assert raw_dir_problem(str(raw), create=True) is None  # absent: generate may create it
    assert "was not written by generate" in raw_dir_problem(str(raw), create=False)
    raw.mkdir()
    assert raw_dir_problem(str(raw), create=True) is None  # empty
    (raw / "orders").mkdir()
    assert "holds files generate did not write" in raw_dir_problem(str(raw), create=True, truth_dir=str(truth))
    (truth / "persons").mkdir(parents=True)  # a demo folder written before the marker existed
    assert raw_dir_problem(str(raw), create=False, truth_dir=str(truth)) is None
    (raw / "my_export.csv").write_text("id\n1\n")  # ... but not once it holds a file of its own
    assert "holds files generate did not write" in raw_dir_problem(str(raw), create=True, truth_dir=str(truth))
    claim_raw_dir(str(tmp_path / "new"), create=True)
    assert (tmp_path / "new" / GENERATED_MARKER).is_file()
    (tmp_path / "new" / "orders.csv").write_text("written by an earlier generate\n")
    assert raw_dir_problem(str(tmp_path / "new"), create=True) is None
    assert raw_dir_problem(str(tmp_path / "new"), create=False) is None
