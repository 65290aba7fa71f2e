"""CSV files that a spreadsheet opens as data, never as formulas.

Excel and LibreOffice read a cell starting with ``=``, ``+``, ``-`` or ``@`` as a formula
(a tab or a carriage return first hides one from the eye), and a formula can fetch URLs or
run commands once the file is opened. Checkpoint names, architectures and notes are typed
by people, so every cell of every CSV export goes through :func:`spreadsheet_cell`.
"""

import csv
import re

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# A plain decimal number, as Python writes floats and ints: a spreadsheet reads it as one.
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def spreadsheet_cell(value):
    """``value`` as a cell a spreadsheet shows as written: text that would start a formula
    gets a leading apostrophe; numbers, negative ones included, stay numbers."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    text = str(value)
    if text.startswith(FORMULA_STARTS) and not _NUMBER.fullmatch(text):
        return "'" + text
    return text


class SpreadsheetWriter:
    """``csv.writer`` whose rows pass through :func:`spreadsheet_cell`, cell by cell."""

    def __init__(self, file, **kwargs):
        self._writer = csv.writer(file, **kwargs)

    def writerow(self, row):
        return self._writer.writerow([spreadsheet_cell(cell) for cell in row])

    def writerows(self, rows):
        for row in rows:
            self.writerow(row)
