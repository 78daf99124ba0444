"""Which lines of a reply the person wrote: quotes, attributions, header blocks, forwarded
parts and signatures told apart from the person's own text, wherever it sits.

The body is read line by line and every line is labelled *own* or not:

- ``>``-prefixed lines are quoted;
- an **attribution** ("On … wrote:" and its forms in the supported languages and in Hungarian,
  Polish, the Nordic languages; Gmail's wrapped two-line form; "Name <addr>:" as Japanese and
  Chinese clients write it), or a **header block** of the quoted message (at least two lines
  such as ``From:`` / ``Sent:`` / ``To:`` / ``Subject:`` in any supported language, plain or
  bold, ``De :`` with a French no-break space, full-width colons), or a ``-----Original
  Message-----`` / forwarded-message separator, starts a quote. When ``>`` lines follow it,
  the quote is those lines and the person's text may resume below them (bottom-posting,
  interleaved answers); otherwise the quote is unprefixed (Outlook, Hungarian clients,
  forwards) and runs to the end;
- a **signature** (``-- `` delimiter, "Sent from my …", "Get Outlook for …") runs until the
  next quote.

Every pattern here is matched once per line, on lines of at most 300 characters, in linear
time. mail-parser-reply, which the classifier used before, keeps only the text above the first
header it knows (no bottom-posting, no interleaving), misses header blocks with no-break
spaces, and its attribution patterns backtrack heavily on long lines.
"""

from __future__ import annotations

import re
from enum import Enum

_SPACES = re.compile(r"[\u00a0\u2007\u202f\u200b\ufeff\t]")

_WROTE = (
    r"(?:\b|\s)(?:wrote|writes|escreveu|escribi[oó]|a\s+[ée]crit|schrieb|ha\s+scritto|schreef|написал\w*|пишет|"
    r"skrev|napisa[lł]\w*(?:\s*\(a\))?|kirjoitti|[íi]rta|wrote\s+the\s+following)|كتب|写道|寫道|작성"
)
# One line (possibly the second of a wrapped one) that ends an attribution.
_ATTRIBUTION = re.compile(
    rf"^.{{0,240}}?(?:{_WROTE})\s*[:：]\s*$|"
    r"^.{0,160}<[^<>\s]+@[^<>\s]+>\s*[:：]\s*$|"
    r"^\s*[^<>\s]+@[^<>\s]+>\s*[:：]\s*$",  # the second line of "… Name <" / "addr>:"
    re.I,
)
# The first line of an attribution wrapped over two lines ("On Mon, 5 Jan 2026 at 10:00,
# Newsletter <" / "news@example.com> wrote:").
_ATTRIBUTION_OPENER = re.compile(r"^\s*(?:on|le|el|am|il|em|op|den|dne|dnia|в|στις|在|于|於|\d{1,4}[./年-])\b", re.I)
_HEADER_NAMES = (
    r"from|sent|to|cc|bcc|date|subject|reply-to|"  # en
    r"de|envoy[ée]|[àa]|objet|"  # fr
    r"von|gesendet|an|betreff|datum|"  # de
    r"enviado|para|asunto|fecha|"  # es
    r"assunto|data|"  # pt
    r"da|inviato|oggetto|"  # it
    r"van|verzonden|aan|onderwerp|"  # nl
    r"от|отправлено|кому|тема|дата|копия|"  # ru
    r"من|إلى|الموضوع|التاريخ|تاريخ\s+الإرسال|أرسل|"  # ar
    r"发件人|發件人|寄件者|寄件人|发送时间|發送時間|寄件日期|"  # zh
    r"收件人|收件者|抄送|副本|主题|主題|主旨|日期|时间|時間|"
    r"差出人|送信日時|宛先|件名|日付|"  # ja
    r"보낸\s*사람|받는\s*사람|날짜|제목|참조|"  # ko
    r"felad[óo]|k[üu]ldve|c[íi]mzett|t[áa]rgy|d[áa]tum|m[áa]solat|"  # hu
    r"od|wys[łl]ano|do|temat|"  # pl
    r"fr[åa]n|skickat|till|[äa]mne|"  # sv
    r"l[äa]hett[äa]j[äa]|vastaanottaja|aihe"  # fi
)
_HEADER_LINE = re.compile(rf"^\s*[*_]*\s*(?:{_HEADER_NAMES})\s*[*_]*\s*[:：]", re.I)
_SENDER_HEADER = re.compile(
    r"^\s*[*_]*\s*(?:from|de|von|da|van|от|من|发件人|發件人|寄件者|寄件人|差出人|보낸\s*사람|felad[óo]|od|fr[åa]n|"
    r"l[äa]hett[äa]j[äa]|sent|envoy[ée]|gesendet|enviado|inviato|verzonden|отправлено|date|datum|fecha|data)\s*[*_]*\s*[:：]",
    re.I,
)
_SEPARATOR = re.compile(
    r"^\s*(?:-{2,}|_{2,}|={2,})?\s*(?:original\s+message|forwarded\s+message|forwarding\s+messages?|mensaje\s+original|"
    r"mensaje\s+reenviado|message\s+d'origine|message\s+transf[ée]r[ée]|urspr[üu]ngliche\s+nachricht|"
    r"weitergeleitete\s+nachricht|messaggio\s+originale|messaggio\s+inoltrato|oorspronkelijk\s+bericht|"
    r"doorgestuurd\s+bericht|mensagem\s+original|mensagem\s+encaminhada|исходное\s+сообщение|"
    r"пересылаемое\s+сообщение|переслан\w*\s+сообщение|原始邮件|转发的邮件|原始郵件|轉寄的郵件|元のメッセージ|"
    r"転送されたメッセージ|الرسالة\s+الأصلية|원본\s*메시지|eredeti\s+üzenet|továbbított\s+üzenet|"
    r"begin\s+forwarded\s+message|d[ée]but\s+du\s+message\s+r[ée]exp[ée]di[ée]|inicio\s+del\s+mensaje\s+reenviado|"
    r"anfang\s+der\s+weitergeleiteten\s+nachricht)\s*(?:-{2,}|_{2,}|={2,}|:)?\s*$",
    re.I,
)
_SIGNATURE = re.compile(
    r"^-- ?$|^\s*(?:sent\s+from\s+my\b|sent\s+from\s+(?:outlook|yahoo|mail\s+for)|get\s+outlook\s+for\b|"
    r"envoy[ée]\s+de\s+mon\b|von\s+meinem\b|gesendet\s+von\s+meinem\b|enviado\s+desde\s+mi\b|enviado\s+do\s+meu\b|"
    r"inviato\s+da(?:l)?\s+(?:mio|iphone)\b|verzonden\s+vanaf\s+mijn\b|отправлено\s+с\s+моего\b|"
    r"从我的|發自我的|送信元の|iphoneから送信)",
    re.I,
)
_LONG_LINE = 300  # an attribution or header line is never longer


# Lines only a newsletter's footer holds: where no attribution marks a quote of the newsletter
# we sent, its footer still does, and the footer is where "Unsubscribe" stands alone.
_NEWSLETTER_FOOTER = re.compile(
    r"you\s+(?:are\s+)?receiv\w*\s+this\s+(?:e-?mail|message|newsletter|mailing)|view\s+(?:this\s+e-?mail\s+)?in\s+(?:your\s+)?browser|"
    r"(?:manage|update)\s+(?:your\s+)?(?:e-?mail\s+)?(?:preferences|subscriptions?)|all\s+rights\s+reserved|^\s*©|"
    r"unsubscribe\s*[|·•]|[|·•]\s*unsubscribe",
    re.I,
)


class Kind(Enum):
    OWN = "own"
    QUOTE = "quote"  # quoted, or an attribution / header block / separator of a quote
    SIGNATURE = "signature"


def _quoted(line: str) -> bool:
    return line.lstrip().startswith(">")


def _attribution(lines: list[str], i: int) -> int | None:
    """The first line of an attribution ending at line ``i``, if line ``i`` ends one."""
    line = lines[i]
    if len(line) > _LONG_LINE or _quoted(line) or not line.rstrip().endswith((":", "：")):
        return None
    if not _ATTRIBUTION.match(line):
        return None
    if i > 0 and lines[i - 1].strip() and not _quoted(lines[i - 1]) and not _ATTRIBUTION_OPENER.match(line):
        previous = lines[i - 1]
        if _ATTRIBUTION_OPENER.match(previous) or previous.rstrip().endswith(("<", ",")):
            return i - 1
    return i


def _header_block(lines: list[str], i: int) -> int | None:
    """The last line of a quoted message's header block starting at line ``i``, if one does:
    a sender or date line and at least one more header line, blank lines allowed between."""
    if not _SENDER_HEADER.match(lines[i]) or len(lines[i]) > _LONG_LINE:
        return None
    end, count, j = i, 1, i + 1
    while j < len(lines) and j <= i + 12:
        line = lines[j]
        if _HEADER_LINE.match(line) and len(line) <= _LONG_LINE:
            end, count = j, count + 1
        elif line.strip() and not (j == end + 1 and len(line) < 120 and not _quoted(line) and count < 4):
            break  # a header value wrapped over two lines is allowed once per header
        j += 1
    return end if count >= 2 else None


def _next_text(lines: list[str], j: int) -> int:
    while j < len(lines) and not lines[j].strip():
        j += 1
    return j


def _title(line: str) -> str:
    return " ".join(line.strip(" *#_=-").split()).casefold()


def label_lines(text: str, title: str = "") -> tuple[list[str], list[Kind]]:
    """The body's lines and what each is. ``title``: the subject of the message replied to;
    a line repeating it below the person's first line starts an unmarked quote of it (a
    newsletter's heading is its subject)."""
    title = _title(title) if len(title.strip()) >= 8 else ""
    lines = _SPACES.sub(" ", text.replace("\r\n", "\n").replace("\r", "\n")).split("\n")
    kinds = [Kind.QUOTE if _quoted(line) else Kind.OWN for line in lines]
    i = 0
    while i < len(lines):
        if kinds[i] is not Kind.OWN:
            i += 1
            continue
        line = lines[i]
        end: int | None = None
        start = i
        if _SEPARATOR.match(line):
            end = i
            block = _header_block(lines, _next_text(lines, i + 1))
            if block is not None:
                end = block
            kinds[i:] = [Kind.QUOTE] * (len(lines) - i)  # a forwarded or original message runs to the end
            break
        block = _header_block(lines, i)
        if block is not None:
            end = block
        else:
            first = _attribution(lines, i)
            if first is not None:
                start, end = first, i
        if end is not None:
            after = _next_text(lines, end + 1)
            if after < len(lines) and _quoted(lines[after]):
                kinds[start : end + 1] = [Kind.QUOTE] * (end + 1 - start)  # attribution of a ">" quote
                i = end + 1
                continue
            kinds[start:] = [Kind.QUOTE] * (len(lines) - start)  # an unprefixed quote runs to the end
            break
        if title and i > 0 and _title(line) == title:
            kinds[i:] = [Kind.QUOTE] * (len(lines) - i)
            break
        if _NEWSLETTER_FOOTER.search(line) and len(line) <= _LONG_LINE:
            start = i
            while start > 0 and lines[start - 1].strip() and kinds[start - 1] is Kind.OWN:
                start -= 1  # the footer's paragraph
            kinds[start:] = [Kind.QUOTE] * (len(lines) - start)
            break
        if _SIGNATURE.match(line):
            j = i
            while j < len(lines) and kinds[j] is Kind.OWN and not (j > i and _starts_quote(lines, j)):
                kinds[j] = Kind.SIGNATURE
                j += 1
            i = j
            continue
        i += 1
    return lines, kinds


def _starts_quote(lines: list[str], j: int) -> bool:
    return bool(_SEPARATOR.match(lines[j]) or _header_block(lines, j) is not None or _attribution(lines, j) is not None)


OMITTED = "[…]"  # stands between two parts of the person's text where a quote was left out


def own_text(text: str, title: str = "") -> str:
    """The person's own lines of a body, every part of them (above, between and below quotes),
    the parts separated by an :data:`OMITTED` line (``title``: see :func:`label_lines`)."""
    lines, kinds = label_lines(text, title)
    parts: list[list[str]] = [[]]
    for line, kind in zip(lines, kinds, strict=True):
        if kind is Kind.OWN:
            parts[-1].append(line)
        elif parts[-1]:
            parts.append([])
    return f"\n\n{OMITTED}\n\n".join("\n".join(part).strip() for part in parts if "".join(part).strip())
