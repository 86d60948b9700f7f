"""Build the README's results table from the results JSON files (never typed by hand).

``python -m experiments.report`` prints a Markdown table of the newest run of every experiment under ``--out``
(default ``results``); ``--write-readme`` replaces the block between ``<!-- results:begin -->`` and
``<!-- results:end -->`` in README.md with it.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

from experiments.harness import REPO_ROOT

BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


def newest_results(out: pathlib.Path) -> list[dict]:
    """The newest experiment results under ``out`` for each distinct configuration, sorted by experiment name.

    Only harness results count (files with ``metrics`` and ``config``; benchmark outputs are skipped). Runs of the
    same experiment with the same configuration (seeds and output folder aside) keep only the newest.
    """
    newest: dict[tuple[str, str], dict] = {}
    for path in sorted(out.glob("*/*.json")) if out.exists() else []:
        try:
            result = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if not isinstance(result, dict) or "metrics" not in result or "config" not in result:
            continue
        config = {k: v for k, v in result["config"].items() if k not in ("seeds", "out")}
        key = (result.get("name", path.parent.name), json.dumps(config, sort_keys=True))
        if key not in newest or result.get("timestamp", "") >= newest[key].get("timestamp", ""):
            newest[key] = result
    return sorted(newest.values(), key=lambda r: (r["name"], not r["config"].get("quick", False), r["timestamp"]))


def _fmt(m: dict) -> str:
    mean, std = m["mean"], m["std"]
    if abs(mean) >= 100 or (abs(mean) < 1e-2 and mean != 0):
        return f"{mean:.3g} ± {std:.2g}"
    return f"{mean:.4f} ± {std:.4f}"


def table(results: list[dict]) -> str:
    """A Markdown table: experiment, headline metric, mean ± std over seeds, seeds, device, date, command."""
    lines = [
        "| experiment | metric | mean ± std | seeds | device | date (UTC) | command |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        names = [n for n in (r.get("headline") or list(r["metrics"])[:3]) if n in r["metrics"]] or list(r["metrics"])[:3]
        for name in names:
            if name not in r["metrics"]:
                continue
            lines.append(
                f"| {r['name']} | {name} | {_fmt(r['metrics'][name])} | {len(r['seeds'])} | "
                f"{r.get('device_kind', '?')} | {r['timestamp'][:8]} | `{r.get('command', '').strip()}` |"
            )
    if len(lines) == 2:
        lines.append("| (no results yet: run an experiment) | | | | | | |")
    return "\n".join(lines)


def write_readme(block: str, readme: pathlib.Path = REPO_ROOT / "README.md") -> None:
    """Replace the results block of the README with ``block``."""
    text = readme.read_text()
    if BEGIN not in text or END not in text:
        raise ValueError(f"experiments.report: {readme} has no '{BEGIN}' ... '{END}' block to replace")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{BEGIN}\n{block}\n{END}{tail}")


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="results", help="results folder")
    parser.add_argument("--write-readme", action="store_true", help="rewrite the README results block")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    block = table(newest_results(pathlib.Path(args.out)))
    print(block)
    if args.write_readme:
        write_readme(block)
    return block


if __name__ == "__main__":
    main()
