"""What a measurement hands back: a titled table for people and flat metrics for scripts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Section:
    """The result of one measurement (one item of the benchmark list)."""

    title: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    #: Flat ``name -> number`` (or None when not measured), merged into the JSON summary.
    metrics: dict[str, Any] = field(default_factory=dict)
    #: Sentences printed under the table: ratios, targets, caveats.
    notes: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        """The section as Markdown: a heading, a table and its notes."""
        lines = [f"### {self.title}", ""]
        if self.rows:
            lines.append("| " + " | ".join(self.headers) + " |")
            lines.append("|" + "|".join("---" for _ in self.headers) + "|")
            lines.extend("| " + " | ".join(row) + " |" for row in self.rows)
            lines.append("")
        lines.extend(f"- {note}" for note in self.notes)
        return "\n".join(lines).rstrip() + "\n"

    def text(self) -> str:
        """The section as aligned plain text, for the terminal."""
        out = [self.title, "=" * len(self.title)]
        if self.rows:
            table = [self.headers, *self.rows]
            widths = [max(len(row[i]) for row in table) for i in range(len(self.headers))]
            for number, row in enumerate(table):
                out.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)))
                if number == 0:
                    out.append("  ".join("-" * width for width in widths))
        out.extend(f"* {note}" for note in self.notes)
        return "\n".join(out) + "\n"


def not_measured(title: str, reason: str, metrics: list[str]) -> Section:
    """A placeholder for a measurement whose subject does not exist yet."""
    return Section(
        title=title,
        headers=[],
        metrics={name: None for name in metrics},
        notes=[f"not measured yet: {reason}"],
    )


def fmt(value: float, digits: int = 2) -> str:
    """A number for a table: thousands separators for big ones, fixed digits for small."""
    if value >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"
