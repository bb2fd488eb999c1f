"""A document of sections (text, tables, code, images) rendered two ways: one self-contained HTML page, every image
embedded as a ``data:`` URI and no reference outside the file, and its Markdown twin, the same sections and
rows, its images as files beside it. What ``sweeplab report`` (:mod:`sweeplab.report`) writes.
"""
from __future__ import annotations

import base64
import dataclasses
import html
import re
from typing import Callable


@dataclasses.dataclass
class Text:
    """A paragraph; ```code``` spans are kept as code."""
    text: str


@dataclasses.dataclass
class Heading:
    """A heading inside a section."""
    text: str


@dataclasses.dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]


@dataclasses.dataclass
class Code:
    text: str


@dataclasses.dataclass
class Image:
    """A PNG; ``name`` is its file name beside the Markdown twin."""
    name: str
    png: bytes
    caption: str = ""


@dataclasses.dataclass
class Section:
    title: str
    blocks: list


_STYLE = """body{font:15px/1.45 system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.6em 0;font-size:13px}td,th{border:1px solid #ccc;padding:3px 7px;
text-align:left;vertical-align:top}th{background:#f2f2f2}tr:nth-child(even) td{background:#fafafa}
code,pre{background:#f5f5f5;font-size:12.5px}pre{padding:.6em;overflow:auto;max-height:30em}
img{max-width:100%;border:1px solid #ddd}figcaption{font-size:13px;color:#555}h2{border-bottom:1px solid #ddd}"""
_CODE = re.compile(r"`([^`]+)`")


def _inline(text: str) -> str:
    return _CODE.sub(r"<code>\1</code>", html.escape(text))


def to_html(title: str, sections: list[Section]) -> str:
    """One page, styles inline, images as ``data:`` URIs: nothing outside the file is referenced."""
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', f"<title>{html.escape(title)}</title>",
           f"<style>{_STYLE}</style></head><body>", f"<h1>{html.escape(title)}</h1>"]
    for section in sections:
        out.append(f"<h2>{html.escape(section.title)}</h2>")
        for block in section.blocks:
            if isinstance(block, Text):
                out.append(f"<p>{_inline(block.text)}</p>")
            elif isinstance(block, Heading):
                out.append(f"<h3>{_inline(block.text)}</h3>")
            elif isinstance(block, Code):
                out.append(f"<pre><code>{html.escape(block.text)}</code></pre>")
            elif isinstance(block, Table):
                out.append("<table><thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in block.headers)
                           + "</tr></thead><tbody>")
                out += ["<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>" for row in block.rows]
                out.append("</tbody></table>")
            elif isinstance(block, Image):
                data = base64.b64encode(block.png).decode()
                out.append(f'<figure><img alt="{html.escape(block.caption or block.name)}" '
                           f'src="data:image/png;base64,{data}"><figcaption>{_inline(block.caption)}</figcaption>'
                           "</figure>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(title: str, sections: list[Section], image_path: Callable[[Image], str]) -> str:
    """The same sections and rows as :func:`to_html`; each image linked at ``image_path(image)``."""
    out = [f"# {title}", ""]
    for section in sections:
        out += [f"## {section.title}", ""]
        for block in section.blocks:
            if isinstance(block, Text):
                out += [block.text, ""]
            elif isinstance(block, Heading):
                out += [f"### {block.text}", ""]
            elif isinstance(block, Code):
                out += ["```", block.text, "```", ""]
            elif isinstance(block, Table):
                out.append("| " + " | ".join(map(_cell, block.headers)) + " |")
                out.append("|" + "---|" * len(block.headers))
                out += ["| " + " | ".join(map(_cell, row)) + " |" for row in block.rows]
                out.append("")
            elif isinstance(block, Image):
                out += [f"![{block.caption or block.name}]({image_path(block)})", ""]
    return "\n".join(out)
