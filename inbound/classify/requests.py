"""Finding a person's request to stop mail in the text they wrote, in many languages.

Pure text functions, no I/O. :func:`find_request` looks at a subject and at the *new* text of
a body (quotes, signatures and list footers already removed by the caller) and answers
whether it holds a clear request, an unclear one, or none:

- **clear**: a phrase that only means "stop mailing me" ("unsubscribe me", "remove me from
  the list", "I no longer wish to receive", "darme de baja", "退订", "отпишите меня", ...), or
  a short text that is essentially the keyword itself ("UNSUBSCRIBE", "stop", "Unsubscribe
  linux-ntb", "Ok unsubscribeme").
- **unclear**: the keyword in a longer text, a request about something narrower ("stop
  sending me patches for ..."), or a clear request contradicted by a negation elsewhere.
  These go to the review queue, never straight to an opt-out.
- nothing: no keyword, a negated keyword ("don't unsubscribe me"), or a keyword used in
  instructions ("to unsubscribe, send ...", "the subject line \"unsubscribe\"").

Text is folded before matching: NFKC, combining marks removed (so "subscrição" and
"subscriçao" match alike), case-folded, and addresses and URLs replaced by placeholders so a
link such as ``/unsubscribe/jane@example.com`` never reads as a request. Patterns are folded
the same way when compiled.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from collections.abc import Iterable, Sequence
from enum import StrEnum

from inbound.classify.quotes import OMITTED

ALL_LANGUAGES = ("en", "zh", "ar", "es", "pt", "fr", "de", "it", "nl", "ja", "ru")

SHORT_WORDS = 6  # a text of at most this many words that holds the keyword is a request
LINES_READ = 200  # lines of a text read one by one for a request on its own line
LINES_ON_TOP = 3  # ... of which the first lines of each part of the person's text count


class Clarity(StrEnum):
    CLEAR = "clear"
    UNCLEAR = "unclear"


@dataclasses.dataclass(frozen=True)
class RequestMatch:
    clarity: Clarity
    where: str  # "subject" or "body"
    language: str
    phrase: str  # the folded text that matched, for the evidence

    def describe(self) -> str:
        return f"{self.where} ({self.language}): {self.phrase!r}"


_URL_RE = re.compile(r"(?:https?://|www\.)\S+", re.I)
_ADDR_RE = re.compile(r"<?(?:mailto:)?[\w.+'=-]+@[\w-]+(?:\.[\w-]+)+>?", re.I)
_WORD_RE = re.compile(r"\w+")
_SPACE_RE = re.compile(r"\s+")
_HSPACE_RE = re.compile(r"[^\S\n]+")
_NEWLINES_RE = re.compile(r"\s*\n\s*")


def strip_marks(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def fold(text: str) -> str:
    """The form every text is matched in (see the module docstring)."""
    text = unicodedata.normalize("NFKC", text)
    text = _URL_RE.sub(" url ", text)
    text = _ADDR_RE.sub(" address ", text)
    text = strip_marks(text).casefold()
    text = text.replace("’", "'").replace("‘", "'").replace("`", "'")
    text = _HSPACE_RE.sub(" ", text)
    return _NEWLINES_RE.sub("\n", text).strip()


_OMITTED = fold(OMITTED)  # the new-text extraction's mark for a left-out quote


def _compile(patterns: Iterable[str]) -> list[re.Pattern[str]]:
    return [re.compile(strip_marks(p), re.I) for p in patterns]


@dataclasses.dataclass(frozen=True)
class Language:
    """The patterns of one language, all written in folded (lower-case, unaccented) form.

    - ``clear``: phrases that are a request on their own; some hold their own negation
      ("no longer wish to receive") and are never negated.
    - ``keywords``: the bare words (unsubscribe, abmelden, 退订); a request only in a short
      text, unclear in a longer one, nothing when negated or in instructions.
    - ``narrow``: requests about something narrower than all mail ("stop sending me X"),
      always unclear.
    - ``negations``: words that, shortly before a keyword or clear phrase, negate it;
      ``negations_after`` the same for languages that negate after the verb.
    - ``instructions``: phrases around a keyword that explain how to unsubscribe instead of
      asking for it.
    - ``solo``: words that are a request only when they are the whole text ("stop");
      ``solo_unclear`` whole-text words that may mean something else ("cancel", "leave").
    """

    code: str
    clear: Sequence[str]
    keywords: Sequence[str]
    negations: Sequence[str] = ()
    negations_after: Sequence[str] = ()
    instructions: Sequence[str] = ()
    narrow: Sequence[str] = ()
    solo: Sequence[str] = ()
    solo_unclear: Sequence[str] = ()

    def compiled(self) -> _Compiled:
        return _Compiled(
            self.code,
            _compile(self.clear),
            _compile(self.keywords),
            re.compile(strip_marks("|".join(f"(?:{n})" for n in self.negations)), re.I) if self.negations else None,
            re.compile(strip_marks("|".join(f"(?:{n})" for n in self.negations_after)), re.I)
            if self.negations_after
            else None,
            _compile(self.instructions),
            _compile(self.narrow),
            frozenset(strip_marks(s).casefold() for s in self.solo),
            frozenset(strip_marks(s).casefold() for s in self.solo_unclear),
        )


@dataclasses.dataclass(frozen=True)
class _Compiled:
    code: str
    clear: list[re.Pattern[str]]
    keywords: list[re.Pattern[str]]
    negation: re.Pattern[str] | None
    negation_after: re.Pattern[str] | None
    instructions: list[re.Pattern[str]]
    narrow: list[re.Pattern[str]]
    solo: frozenset[str]
    solo_unclear: frozenset[str]


_LIST = (
    r"(?:(?:the|your|this|that|our|all|any|these|those|my)\s+)?(?:[\w.-]+\s+){0,3}?"
    r"(?:mailing\s*lists?|e-?mail\s*lists?|lists?|distribution\s*lists?|newsletters?|mailings?|e-?mails?|mails?|"
    r"database|contacts?|subscribers?|subscriptions?)"
)

_WHOM = (
    r"(?:me|us|myself|ourselves|my\s+[\w-]+(?:\s+[\w-]+)?|our\s+[\w-]+|(?:this|the|that|my)\s+(?:e-?mail\s+)?address|"
    r"(?:e-?mail\s+)?address(?:\s+address)*)"
)
# What a request to "opt out of X" / "be removed from X" may name for it to mean mail.
_MAIL_OBJECT = re.compile(
    r"^\s*(?:of|from|off)\s+(?:"
    r"(?:this|it|them|that|everything|all(?:\s+of\s+(?:this|them|it))?)\s*(?:$|[.!,;:?)]|please|thanks|thank|now|immediately|asap)"
    r"|(?:(?:the|this|your|our|these|those|all|any|future|further|my)\s+)*(?:(?!of\b|for\b|on\b|in\b)[\w-]+\s+){0,2}?"
    r"(?:mailing|list|lists|e-?mails?|mails?|messages|newsletters?|communications?|updates|marketing|promotions?|notifications?|subscriptions?|database|distribution)\b(?!\s+of\b))"
)
_NAMES_AN_OBJECT = re.compile(r"^\s*(?:of|from|off)\s+\S")

# "unsubscribe" as people type it ("unsubscrible", "unsubcribe", "unsuscribe", "usubscribe"),
# never the past tense ("unsubscribed" reports, it does not ask).
_UNSUB = r"(?!\w*ed\b)(?:un-?sub\w*|unsus?c?ri\w*|unscri\w*|usubscri\w*|unsbscri\w*|unsusbcri\w*)"
# What "stop sending me …" may name: mail of any kind.
_SENT_STUFF = (
    r"(?:\s+(?:(?:any|more|further|these|those|this|your|the|such|all|of|so\s+many)\s+){0,3}"
    r"(?:e-?mails?|mails?|messages|newsletters?|spam|stuff|junk|offers|promotions?|ads|updates|things|crap)"
    r"|\s+(?:this|these|that|it|anything|everything))?(?:\s+like\s+this)?"
)

LANGUAGES: dict[str, Language] = {
    "en": Language(
        "en",
        clear=[
            r"\b" + _UNSUB + r"\s+(?:me|us|my\s+(?:e-?mail\s*)?(?:address|e-?mail|account))\b",
            r"\b(?:remove|delete|take|drop)\s+(?:me|us|my\s+(?:e-?mail\s*)?(?:address|e-?mail))\s*(?:$|[.!,;)]|please|pls|thanks|thank|now|asap|immediately|off\b)",
            r"\bopt\s+(?:me|us)\s+out\b",
            r"\bplease\s+(?:help\s+(?:me\s+)?)?(?:to\s+)?" + _UNSUB,
            r"\b(?:request|requesting|asking)\s+(?:for\s+|to\s+)?(?:an?\s+|the\s+)?un-?subscri\w*",
            r"\b(?:i|we)\s*(?:'d|would|'m|am)?\s*(?:really\s+|just\s+|hereby\s+)?(?:like|want|wish|need|request|demand|ask|asking|requesting)\s+(?:you\s+)?to\s+(?:request\s+to\s+)?(?:unsubscribe|be\s+(?:unsubscribed|removed|taken\s+off|deleted)|opt\s*-?\s*out)\b",
            r"\b(?:i|we)\s*(?:'d|would)?\s*(?:like|want|wish)\s+(?:my\s+(?:e-?mail\s*)?(?:address|e-?mail|name)\s+)?(?:to\s+be\s+)?(?:removed|deleted|unsubscribed)\b",
            r"\b(?:remove|delete|unsubscribe|take|drop|unlink|erase|strike)\s+"
            + _WHOM
            + r"\b[^.!?\n]{0,40}?\b(?:from|off|out\s+of)\s+"
            + _LIST
            + r"\b",
            r"\bremove\s+from\s+" + _LIST + r"\b",
            r"\bno\s+longer\s+(?:wish|want|like|need)\s+to\s+(?:receive|be\s+(?:receiving|on|sent))\b",
            r"\b(?:no\s+longer|don'?t|do\s+not|never)\s+(?:wish|want|like|need)\s+to\s+(?:receive|be\s+receiving|get|be\s+getting)\s+(?:any\s+(?:more|further)\s+|more\s+|further\s+)?(?:of\s+)?(?:your\s+|these\s+|this\s+|those\s+|the\s+|any\s+)?(?:e-?mails?|mails?|messages|newsletters?|information|info|updates|notifications|offers|spam|communications?)\b",
            r"\b(?:no\s+longer|don'?t|do\s+not)\s+(?:wish|want)\s+(?:any\s+(?:more\s+)?|to\s+get\s+)?(?:your\s+|these\s+|this\s+)?(?:e-?mails?|mails?|messages|newsletters?|spam)\b",
            r"\b(?:stop|quit|cease)\s+(?:sending|e-?mailing|mailing|spamming|messaging|contacting|writing\s+to)\s+(?:me|us)"
            + _SENT_STUFF
            + r"\s*(?:$|[.!,;:)]|please|thanks|thank|now|immediately|at\s+once|right\s+now|any\s*more)",
            r"(?:^|(?<=[.!?,]))\s*(?:(?:so|and|just|please|then|ok|okay)\s+){0,2}no\s+more\s+(?:e-?mails?|mails?|messages|newsletters?|spam)"
            r"(?:\s+(?:please|pls|thanks|thank\s+you|from\s+(?:you|this|your)\b[^.!?\n]{0,30}))?\s*(?:$|[.!,;)])",
            r"\b(?:take|get)\s+me\s+off\s*(?:$|[.!,;)]|please|pls|thanks|now)",
            r"\b(?:stop|cease)\s+(?:(?:all|these|those|your|the|this)\s+){0,2}(?:e-?mails?|mails?|mailings|messages|newsletters?)\b",
            r"\b" + _UNSUB + r"\s+(?:please|pls|plz|now|asap|immediately|thank|thanks)\b",
        ],
        keywords=[r"\bun-?sub\w*|\bunsus?c?ri\w*|\bunscri\w*|\busubscri\w*|\bunsbscri\w*|\bunsusbcri\w*|\bopt-?out\b"],
        negations=[
            r"\bdon'?t\b",
            r"\bdo\s+not\b",
            r"\bdidn'?t\b",
            r"\bnot\b",
            r"\bnever\b",
            r"\bno\s+need\b",
            r"\bwon'?t\b",
            r"\bwouldn'?t\b",
            r"\bcan'?t\b",
            r"\bcannot\b",
            r"\bwithout\b",
        ],
        instructions=[
            r"\b(?:to|how\s+(?:to|do\s+(?:i|you)|can\s+(?:i|you))|way\s+to|want\s+to|wish\s+to|like\s+to|tried\s+(?:to|the)[\w\s]{0,20}?|trying\s+to|able\s+to|option\s+to|link\s+to|ability\s+to|you\s+can|you\s+may|can\s+also|in\s+order\s+to)\s+(?:\w+\s+){0,2}un-?sub\w*",
            r"\bun-?sub\w*\s+(?:link|button|page|url|here|instructions?|option|process|request|from\s+this\s+(?:group|topic)|address|command|form|at\s+any\s+time|by\s+(?:clicking|sending|replying))",
            r"[\"'“”«]\s*un-?sub\w*\s*[\"'“”»]",
            r"\b(?:click|send|reply|replying|e-?mail|mail)\b[^.!?\n]{0,60}\bun-?sub\w*",
            r"\bif\s+you\b[^.!?\n]{0,40}\bun-?sub\w*",
        ],
        narrow=[r"\b(?:stop|quit|cease)\s+(?:sending|e-?mailing|mailing|cc'?ing|copying|adding)\s+(?:me|us)\b"],
        solo=[
            "stop",
            "stop all",
            "stopall",
            "remove",
            "remove me",
            "unsubscribe",
            "unsub",
            "opt out",
            "optout",
            "opt-out",
            "stop please",
            "please stop",
            "stop it",
            "take me off",
            "take me off the list",
            "no more",
            "no more emails",
        ],
        solo_unclear=["end", "cancel", "quit", "leave", "unsubscribed"],
    ),
    "zh": Language(
        "zh",
        clear=[
            r"(?:我要|我想|我希望|请|請|麻烦|麻煩|帮我|幫我|要求|申请|申請)\s*(?:帮我\s*)?(?:退订|退訂|取消订阅|取消訂閱|退出(?:邮件列表|郵件列表|列表)|停止(?:发送|發送|订阅|訂閱))",
            r"(?:不要|别|別|请勿|請勿|不要再)\s*(?:再)?\s*(?:给我|給我|向我)?\s*(?:发|發|寄)(?:送)?(?:邮件|郵件|信|了)?",
            r"(?:把我|将我|將我)\s*(?:从|從)\s*(?:\S{0,10})?(?:列表|名单|名單)\s*(?:中)?\s*(?:删除|刪除|移除)",
            r"^\s*(?:退订|退訂|取消订阅|取消訂閱|td)\s*(?:谢谢|謝謝|,|，|。|!|！|\s)*$",
        ],
        keywords=[r"退订|退訂|取消订阅|取消訂閱"],
        negations=[r"不要|不想|不用|别|別|勿|没有|沒有|不"],
        instructions=[
            r"(?:回复|回覆|回)\s*\w{0,4}\s*(?:退订|退訂)",
            r"(?:退订|退訂|取消订阅|取消訂閱)\s*(?:请|請|:|：|，|,)",
            r"(?:如需|如要|若要|如果要|如想|如果您?想)\s*(?:退订|退訂|取消订阅|取消訂閱)",
            r"(?:退订|退訂)\s*(?:链接|鏈接|方法|方式)",
        ],
        solo=["退订", "退訂", "td", "取消订阅", "取消訂閱"],
    ),
    "ar": Language(
        "ar",
        clear=[
            r"(?:ا|أ|إ)?لغاء\s+(?:ال)?اشتراك(?:ي)?",
            r"(?:ا|أ|إ)لغ(?:ي|وا)?\s+(?:ال)?اشتراك(?:ي)?",
            r"(?:ا|أ)زل(?:ني|وني)|(?:ا|أ)حذف(?:ني|وني)|(?:ا|أ)خرج(?:ني|وني)",
            r"(?:ا|أ)رجو\s+(?:ال)?(?:حذف|ازالة|إزالة)",
            r"لا\s+(?:ا|أ)ريد\s+(?:ان\s+|أن\s+)?(?:تلقي|استلام|استقبال|وصول)",
            r"(?:توقف|توقفوا|(?:ا|أ)وقف(?:وا)?)\s+(?:عن\s+)?(?:ارسال|إرسال)",
        ],
        keywords=[r"(?:ا|أ|إ)لغاء\s+(?:ال)?اشتراك"],
        negations=[r"\bلا\b", r"\bلم\b", r"\bلن\b", r"\bليس\b", r"\bما\b"],
        instructions=[r"(?:ل|لل)(?:ا|إ)لغاء\s+(?:ال)?اشتراك", r"(?:رابط|زر)\s+(?:ا|إ)لغاء"],
        solo=["الغاء الاشتراك", "إلغاء الاشتراك", "توقف", "stop"],
    ),
    "es": Language(
        "es",
        clear=[
            r"\b(?:dar(?:me|nos)?|darse|de|den(?:me)?|dame|denme|deme)\s+(?:de\s+)?baja\b",
            r"\b(?:cancelar|anular|cancela|cancelen|anulen|quiero\s+cancelar)\s+(?:mi|la|su|esta)\s+(?:suscripcion|subscripcion|inscripcion)\b",
            r"\bdesuscribir(?:me|nos)?\b|\bdesuscribanme\b|\bdesinscribir(?:me)?\b",
            r"\b(?:quitar|quiten|quitenme|eliminar|eliminen|eliminenme|borrar|borren|borrenme|sacar|saquen|saquenme|retirar|retiren|retirenme)(?:me)?\b[^.!?\n]{0,40}\b(?:de\s+)?(?:la|su|esta|vuestra|sus)\s+(?:lista|listas|base\s+de\s+datos|boletin)",
            r"\bno\s+(?:quiero|deseo)\s+(?:seguir\s+)?recibir\b",
            r"\bno\s+me\s+(?:envien|manden|escriban|envies|mandes)\s+mas\b",
            r"(?:^|(?<=[.!?,]))\s*no\s+mas\s+(?:correos|e-?mails?|mails?|mensajes|boletines|newsletters?)\b",
            r"\bdejen\s+de\s+(?:enviarme|mandarme|escribirme)\b",
        ],
        keywords=[r"\bbaja\b", r"\bdesuscri\w*"],
        negations=[r"\bno\b", r"\bnunca\b", r"\bsin\b"],
        instructions=[
            r"\bpara\s+(?:darse|darte|dar(?:se)?)\s+de\s+baja\b",
            r"\bsi\s+(?:desea|quiere|deseas|quieres)\b[^.!?\n]{0,40}\bbaja\b",
            r"\benlace\s+(?:de|para)\b[^.!?\n]{0,20}\bbaja\b",
        ],
        solo=["baja", "de baja"],
        solo_unclear=["alto", "cancelar", "salir"],
    ),
    "pt": Language(
        "pt",
        clear=[
            r"\b(?:quero|gostaria\s+de|pretendo|desejo|favor|por\s+favor)\s+(?:de\s+)?(?:cancelar|anular|sair|ser\s+removid[oa]|ser\s+excluid[oa]|descadastrar|remover|deixar\s+de\s+receber)\b",
            r"\bcancelar\s+(?:a|minha|esta|essa|o\s+meu|meu)\s+(?:inscricao|subscricao|assinatura|cadastro|registo|registro)\b",
            r"\bdescadastr(?:ar|e|em|ar-me|e-me|em-me)\b|\bdesinscrever(?:-me)?\b",
            r"\b(?:remova|removam|retire|retirem|exclua|excluam|tire|tirem)(?:-me)?\b[^.!?\n]{0,40}\b(?:da|desta|dessa|de\s+sua)\s+(?:lista|mailing|base)",
            r"\b(?:me\s+)?(?:remova|removam|retire|retirem|exclua|excluam|tirem)-me\b|\bme\s+(?:remova|removam|retire|retirem|exclua|excluam|tire|tirem)\b",
            r"\bnao\s+(?:quero|desejo)\s+(?:mais\s+)?receber\b",
            r"\bnao\s+(?:quero|desejo)\s+mais\s+(?:e-?mails?|mensagens|newsletters?|correspondencia)\b",
            r"\bparem\s+de\s+(?:me\s+)?(?:enviar|mandar)\b",
            r"\bsair\s+da\s+lista\b",
        ],
        keywords=[r"\bdescad\w{0,2}str\w*", r"\bcancelar\s+(?:a\s+)?(?:inscricao|subscricao|assinatura)"],
        negations=[r"\bnao\b", r"\bnunca\b", r"\bsem\b"],
        instructions=[
            r"\bpara\s+(?:se\s+)?(?:descadastrar|cancelar)\b",
            r"\bse\s+(?:deseja|quiser|voce\s+quiser)\b[^.!?\n]{0,40}\b(?:descadastr|cancelar)",
        ],
        solo=["descadastrar", "descadastre", "descadrastar"],
        solo_unclear=["sair", "cancelar", "parar", "pare"],
    ),
    "fr": Language(
        "fr",
        clear=[
            r"\b(?:me\s+)?desabonner?\b(?:-moi)?|\bdesabonnez(?:-moi)?\b|\bdesinscri(?:re|vez|vez-moi|s-moi|ption)\b|\bme\s+desinscrire\b",
            r"\b(?:retirez|supprimez|enlevez|rayez|otez|effacez)(?:-moi|-nous)?\b[^.!?\n]{0,40}\b(?:de\s+)?(?:la|votre|cette|vos)\s+(?:liste|listes|base|fichier|newsletter)",
            r"\b(?:retirez|supprimez|enlevez|rayez)-moi\b",
            r"\bje\s+ne\s+(?:veux|souhaite|desire)\s+plus\s+(?:recevoir|etre)\b",
            r"\bne\s+plus\s+recevoir\b",
            r"(?:^|(?<=[.!?,]))\s*plus\s+(?:de\s+|d')(?:e-?mails?|mails?|courriels?|messages|newsletters?)\b(?!\s+(?:que|de\s+\d))",
            r"\barretez\s+de\s+m'?(?:envoyer|ecrire|contacter)\b",
            r"\b(?:je\s+(?:veux|voudrais|souhaite|souhaiterais|desire)|merci\s+de)\s+(?:me\s+)?(?:desabonner|desinscrire|retirer|supprimer)\b",
        ],
        keywords=[r"\bdesabon\w*|\bdesinscri\w*"],
        negations=[r"\bne\b", r"\bn'", r"\bpas\b", r"\bjamais\b", r"\bsans\b"],
        instructions=[
            r"\bpour\s+(?:vous\s+|se\s+)?(?:desabonner|desinscrire)\b",
            r"\bsi\s+vous\s+(?:souhaitez|voulez|desirez)\b[^.!?\n]{0,40}\b(?:desabonn|desinscri)",
            r"\blien\s+de\s+(?:desabonnement|desinscription)\b",
        ],
        solo=["stop", "desabonner", "desabonnement", "desabonement", "desinscription"],
    ),
    "de": Language(
        "de",
        clear=[
            r"\b(?:bitte\s+)?(?:melden|tragen|nehmen|streichen|loschen|entfernen)\s+sie\s+mich\b[^.!?\n]{0,50}?\b(?:ab|aus|heraus|raus|loschen|entfernen)\b",
            r"\b(?:bitte\s+)?(?:entfernen|loschen|streichen)\s+sie\s+(?:mich|meine\s+(?:e-?mail(?:-?adresse)?|adresse))\b",
            r"\bich\s+(?:mochte|will|wurde\s+gerne|mochte\s+gerne|wunsche)\s+(?:mich\s+)?(?:vom\s+newsletter\s+|von\s+\w+\s+)?(?:abmelden|austragen|abbestellen|keine\b)",
            r"\b(?:newsletter|abo|abonnement|verteiler)\s+(?:bitte\s+)?(?:abbestellen|kundigen|abmelden|beenden)\b",
            r"\bkeine\s+(?:weiteren\s+)?(?:e-?mails|mails|nachrichten|newsletter|werbung)\s+mehr\b",
            r"\bbitte\s+(?:abmelden|austragen|abbestellen)\b",
            r"\b(?:abmelden|austragen|abbestellen)\s+bitte\b",
        ],
        keywords=[r"\babmeld\w*|\babbestel\w*|\baustragen\b"],
        negations=[r"\bnicht\b", r"\bkein\b", r"\bnie\b", r"\bohne\b"],
        instructions=[
            r"\bum\s+(?:sich\s+)?\w{0,20}\s*(?:abzumelden|auszutragen|abzubestellen)\b",
            r"\bzum\s+(?:abmelden|abbestellen|austragen)\b",
            r"\bwenn\s+sie\b[^.!?\n]{0,40}\b(?:abmelden|abbestellen|austragen)\b",
            r"\b(?:abmelde|abbestell)-?link\b",
        ],
        solo=["abmelden", "abbestellen", "austragen", "stop", "stopp"],
    ),
    "it": Language(
        "it",
        clear=[
            r"\bdisiscriver(?:mi|ci)\b|\bdisiscrivetemi\b|\bcancellatemi\b|\brimuovetemi\b|\btoglietemi\b|\beliminatemi\b",
            r"\b(?:cancellare|annullare|revocare|disdire)\s+(?:la\s+|l'\s*|il\s+)?(?:mia\s+|mio\s+)?(?:iscrizione|sottoscrizione|abbonamento)\b",
            r"\b(?:rimuovere|cancellare|togliere|eliminare)(?:mi)?\b[^.!?\n]{0,40}\b(?:dalla|dalle|dai|dal)\s+(?:vostra\s+|sua\s+|mailing\s+)?(?:lista|liste|mailing|newsletter|database|indirizzario)",
            r"\bnon\s+(?:voglio|desidero)\s+(?:piu\s+)?ricevere\b",
            r"\bsmettete\s+di\s+(?:inviarmi|mandarmi|scrivermi)\b",
            r"(?:^|(?<=[.!?,]))\s*(?:basta|niente\s+piu)\s+(?:e-?mail|mail|newsletter|messaggi)\b",
        ],
        keywords=[r"\bdisis?cri\w*"],
        negations=[r"\bnon\b", r"\bmai\b", r"\bsenza\b"],
        instructions=[
            r"\bper\s+(?:disiscriversi|cancellarsi|disiscriverti)\b",
            r"\bse\s+(?:desidera|desideri|vuoi|vuole)\b[^.!?\n]{0,40}\b(?:disiscri|cancellar)",
        ],
        solo=["disiscrivimi", "disicrivimi", "disiscrivere", "cancellami", "stop"],
    ),
    "nl": Language(
        "nl",
        clear=[
            r"\b(?:schrijf|meld)\s+(?:mij|me|ons)\s+(?:\w+\s+){0,3}?(?:uit|af)\b",
            r"\b(?:verwijder|haal)\s+(?:mij|me|ons|mijn\s+(?:e-?mail(?:adres)?|adres))\b[^.!?\n]{0,40}\b(?:uit|van)\b",
            r"\bik\s+(?:wil|zou\s+graag|wens)\s+(?:mij|me)?\s*(?:graag\s+)?(?:afmelden|uitschrijven|uitgeschreven\s+worden|verwijderd\s+worden)\b",
            r"\bgeen\s+(?:e-?mails|mails|nieuwsbrieven|berichten)\s+meer\b",
            r"\b(?:afmelden|uitschrijven)\s+(?:aub|a\.u\.b\.|graag|alstublieft|alsjeblieft)\b",
        ],
        keywords=[r"\bafmeld\w*|\buitschrijv\w*"],
        negations=[r"\bniet\b", r"\bnooit\b", r"\bgeen\b", r"\bzonder\b"],
        instructions=[
            r"\bom\s+(?:u|je|zich)?\s*(?:af\s+te\s+melden|uit\s+te\s+schrijven)\b",
            r"\b(?:afmeld|uitschrijf)link\b",
            r"\bwilt\s+u\b[^.!?\n]{0,40}\b(?:afmelden|uitschrijven)\b",
        ],
        solo=["afmelden", "uitschrijven", "stop", "stoppen"],
    ),
    "ja": Language(
        "ja",
        clear=[
            r"(?:配信|購読|登録|メール)\s*(?:を|の)?\s*(?:停止|解除|中止)\s*(?:して|を|し|お願い|希望|ください|下さい|したい)",
            r"(?:配信|購読|メルマガ)\s*(?:を|の)?\s*(?:停止|解除)\s*(?:$|。|！|!)",
            r"(?:メール|メルマガ)\s*(?:を|は)?\s*(?:もう)?\s*(?:送らないで|送信しないで|不要です|いりません)",
            r"(?:退会|配信停止|購読解除|登録解除)\s*(?:希望|します|したい|をお願い|お願い|してください|して下さい)",
            r"^\s*(?:配信停止|購読解除|登録解除|退会)\s*(?:。|！|!|\s)*$",
        ],
        keywords=[r"配信停止|購読解除|登録解除|配信解除"],
        negations_after=[
            r"^\s*(?:を|は)?\s*(?:し)?(?:ないで|ません|なくて|ではない|じゃない)",
            r"^\s*(?:は)?\s*(?:不要|いりません|必要ありません)",
        ],
        instructions=[
            r"(?:配信停止|購読解除|登録解除|配信解除)\s*(?:は|の方法|用|をご希望の方は|する場合|するには|はこちら|のリンク|url)",
            r"こちら(?:から|より)",
        ],
        solo=["配信停止", "購読解除", "登録解除", "退会"],
    ),
    "ru": Language(
        "ru",
        clear=[
            r"\bотпиш(?:ите|и)\s+(?:меня|нас)\b",
            r"\b(?:хочу|прошу|просим|хотим|хотел\w*\s+бы)\s+(?:\w+\s+)?(?:отписаться|отказаться\s+от\s+рассылки|удалить\s+(?:мой|мою|меня))\b",
            r"\bудалите\s+(?:меня|мой\s+(?:адрес|e-?mail|имейл)|мою\s+почту)\b",
            r"\bисключите\s+меня\b",
            r"\bне\s+(?:хочу|желаю)\s+(?:больше\s+)?(?:получать|получить)\b",
            r"\bпрекратите\s+(?:присылать|отправлять|рассылку|слать)\b",
            r"\bбольше\s+не\s+(?:присылайте|отправляйте|пишите)\b",
            r"\bне\s+(?:присылайте|отправляйте|пишите|шлите)\s+(?:мне\s+)?(?:больше|писем|рассылку)\b",
        ],
        keywords=[r"\bотпис\w*"],
        negations=[r"\bне\b", r"\bни\b", r"\bнельзя\b", r"\bбез\b"],
        instructions=[
            r"\b(?:чтобы|для\s+того\s+чтобы|для)\s+(?:\w+\s+){0,2}отпис\w*",
            r"\bотпис\w*\s+(?:можно|по\s+ссылке|здесь)\b",
            r"\bесли\s+(?:вы\s+)?(?:хотите|желаете)\b[^.!?\n]{0,40}\bотпис\w*",
        ],
        solo=["отписаться", "отписка", "отпишите", "отпишите меня", "стоп", "stop"],
    ),
}

_COMPILED: dict[str, _Compiled] = {code: lang.compiled() for code, lang in LANGUAGES.items()}

# Greetings and thanks that do not make a text longer than "just the keyword".
_FILLER = re.compile(
    r"\b(?:hi|hello|hey|dear|sir|madam|team|all|manager|please|pls|plz|kindly|thanks?|thank\s+you|thx|ty|cheers|regards|ok|okay|now|asap|me|us|from|the|your|this|mailing|list|e-?mail|newsletter|immediately|again)\b|"
    r"\b(?:gracias|por\s+favor|obrigad[oa]|merci|danke|bitte|grazie|dank\s+u|bedankt|спасибо|пожалуйста)\b|谢谢|謝謝|请|請|ありがとう",
    re.I,
)


def _words(text: str) -> list[str]:
    return _WORD_RE.findall(text)


def _cjk_heavy(text: str) -> bool:
    return sum(1 for c in text if "\u3040" <= c <= "\u9fff") >= max(2, len(text) // 3)


def _is_short(text: str) -> bool:
    if _cjk_heavy(text):
        return len(re.sub(r"\W", "", text)) <= 12
    return len(_words(text)) <= SHORT_WORDS


def _negated(lang: _Compiled, text: str, start: int, end: int) -> bool:
    """Whether a negation governs the match at ``text[start:end]``: shortly before it in
    the same sentence (most languages), or right after it (Japanese)."""
    if lang.negation is not None:
        sentence_start = max(text.rfind(p, 0, start) for p in ".!?\n。！？") + 1
        before = text[max(sentence_start, start - 40) : start]
        words = before.split()[-4:]
        window = " ".join(words)
        if lang.code in ("zh",):
            window = before[-6:]
        if lang.negation.search(window):
            return True
        inside = text[start:end]
        if lang.code in ("de", "fr", "nl", "it", "es", "pt", "ru") and lang.negation.search(inside):
            return True
    return lang.negation_after is not None and lang.negation_after.search(text[end : end + 12]) is not None


def _in_instruction(lang: _Compiled, text: str, start: int, end: int) -> bool:
    for pattern in lang.instructions:
        for m in pattern.finditer(text):
            if m.start() <= end and m.end() >= start:
                return True
    return False


def _scan(text: str, where: str, languages: Sequence[str]) -> tuple[RequestMatch | None, bool]:
    """The strongest request in one folded text, and whether a negated one was seen."""
    if not text:
        return None, False
    best: RequestMatch | None = None
    negated = False
    narrowed = False  # a clear phrase turned out to be about something other than mail
    bare = re.sub(r"[^\w\s'-]", " ", text)
    bare = _SPACE_RE.sub(" ", bare).strip()
    for code in languages:
        lang = _COMPILED.get(code)
        if lang is None:
            continue
        if bare in lang.solo:
            return RequestMatch(Clarity.CLEAR, where, code, bare), False
        if bare in lang.solo_unclear:
            best = best or RequestMatch(Clarity.UNCLEAR, where, code, bare)
            continue
        for pattern in lang.clear:
            for m in pattern.finditer(text):
                if _negated(lang, text, m.start(), m.end()) and not _self_negating(m.group(0)):
                    negated = True
                    continue
                after = text[m.end() : m.end() + 80]
                if code == "en" and _NAMES_AN_OBJECT.match(after) and not _MAIL_OBJECT.match(after):
                    # "opt out of the meeting", "be removed from the CC": about something else
                    best = best or RequestMatch(Clarity.UNCLEAR, where, code, (m.group(0) + after).strip()[:100])
                    narrowed = True
                    continue
                return RequestMatch(Clarity.CLEAR, where, code, m.group(0).strip()), negated
        for pattern in lang.narrow:
            narrow = pattern.search(text)
            if narrow and not _negated(lang, text, narrow.start(), narrow.end()):
                phrase = text[narrow.start() : narrow.end() + 40].strip()
                best = best or RequestMatch(Clarity.UNCLEAR, where, code, phrase)
        for pattern in lang.keywords:
            for m in pattern.finditer(text):
                if _negated(lang, text, m.start(), m.end()):
                    negated = True
                    continue
                around = text[max(0, m.start() - 30) : m.end() + 30].strip()
                if _in_question(text, m.end()):  # "did you unsubscribe me?", "how do I unsubscribe?"
                    best = best or RequestMatch(Clarity.UNCLEAR, where, code, around)
                    continue
                if _in_instruction(lang, text, m.start(), m.end()):
                    continue
                if _is_short(_FILLER.sub(" ", text)) and not _past_tense(m.group(0)) and not narrowed:
                    return RequestMatch(Clarity.CLEAR, where, code, text[:80]), negated
                best = best or RequestMatch(Clarity.UNCLEAR, where, code, around)
    return best, negated


def _in_question(text: str, end: int) -> bool:
    """Whether the sentence holding ``text[end]`` ends with a question mark."""
    stops = [i for i in (text.find(p, end) for p in ".!\n。！?？") if i >= 0]
    return bool(stops) and text[min(stops)] in "?？"


def _past_tense(word: str) -> bool:
    """ "unsubscribed" reports something ("I unsubscribed by mistake"); it asks for nothing."""
    return word.endswith("ed") and word.startswith("un")


def _self_negating(phrase: str) -> bool:
    """Clear phrases that carry their own negation ("no longer wish to receive")."""
    return bool(
        re.search(
            r"\b(?:no\s+longer|don'?t|do\s+not|never|nao|no|ne|keine|geen|non|не|لا)\b|不要|别|別|勿|しないで|送らないで|plus|больше\s+не",
            phrase,
        )
    )


_REPLY_PREFIX = re.compile(
    r"^\s*(?:(?:re|aw|sv|vs|antw|antwort|ref|rif|r|res|resp|odp|ynt|atb|vá|回复|回覆|答复|返信|ответ|رد)\s*(?:\[\d+\]|\(\d+\))?\s*[:：]\s*)+",
    re.I,
)
_FORWARD_PREFIX = re.compile(
    r"^\s*(?:(?:fw|fwd|wg|tr|enc|rv|doorst|i|pd|fs|转发|轉寄|転送|пересл|إعادة توجيه)\s*[:：]\s*)+", re.I
)
_TAG = re.compile(r"^\s*\[[^\]]{1,60}\]\s*")


def clean_subject(subject: str) -> tuple[str, bool]:
    """The subject without list tags and reply/forward prefixes, and whether it had such a
    prefix (a reply's subject is the original's, so it says nothing about the reply)."""
    text = subject or ""
    prefixed = False
    for _ in range(4):
        before = text
        text = _TAG.sub("", text)
        m = _REPLY_PREFIX.match(text) or _FORWARD_PREFIX.match(text)
        if m:
            prefixed = True
            text = text[m.end() :]
        if text == before:
            break
    return text.strip(), prefixed


def named_addresses(*texts: str) -> set[str]:
    """Every mail address written in ``texts``, lower-cased (a ``mailto:`` prefix dropped)."""
    found = set()
    for text in texts:
        for raw in _ADDR_RE.findall(text):
            found.add(raw.strip("<>").lower().removeprefix("mailto:"))
    return found


def _line_request(text: str, languages: Sequence[str]) -> RequestMatch | None:
    """A clear request that is a short line of its own near the top of a part of the person's
    text ("Unsubscribe" above "Thanks, see you Thursday"), the way it would be as the whole
    text. Deeper lines do not count: a line "Unsubscribe" far down is more likely a quoted
    newsletter's footer that no attribution marked. Parts are separated by the ``[…]`` line
    the new-text extraction leaves where a quote was."""
    if "\n" not in text:
        return None
    depth = 0
    for line in text.split("\n")[:LINES_READ]:
        if line == _OMITTED:
            depth = 0
            continue
        depth += 1
        if depth <= LINES_ON_TOP and _is_short(_FILLER.sub(" ", line)):
            match, _ = _scan(line, "body", languages)
            if match is not None and match.clarity is Clarity.CLEAR:
                return match
    return None


def find_request(subject: str, body: str, languages: Sequence[str] = ALL_LANGUAGES) -> RequestMatch | None:
    """The request in a subject and the new text of a body, if any (see the module docstring).

    ``body`` must already be stripped of quotes, signatures and footers. A subject counts only
    when it is not a reply's or a forward's.
    """
    cleaned, prefixed = clean_subject(subject)
    folded_body = fold(body)
    body_match, body_negated = _scan(folded_body, "body", languages)
    if body_match is None or body_match.clarity is Clarity.UNCLEAR:
        line_match = _line_request(folded_body, languages)
        if line_match is not None:  # "STOP" on its own line above the person's paragraph
            body_match = dataclasses.replace(line_match, clarity=Clarity.UNCLEAR) if body_negated else line_match
    subject_match: RequestMatch | None = None
    if not prefixed:
        subject_match, _ = _scan(fold(cleaned), "subject", languages)
    for match in (body_match, subject_match):
        if match is not None and match.clarity is Clarity.CLEAR:
            if body_negated and match.where == "subject":
                return dataclasses.replace(match, clarity=Clarity.UNCLEAR)
            return match
    if body_match is not None:
        return body_match
    if subject_match is not None:
        return subject_match
    return None
