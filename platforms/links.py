"""Post URL parsing and normalisation: the one place that decides which post a link names.

Pure (no Django, no ORM, no I/O, no clock) so that the API, the admin and management commands share
one definition and it can be tested at every boundary without a database (DESIGN §3, STYLE principle 1).

Canonical URLs are *rebuilt* from the validated parts that identify the post, never edited from the
input. That is what makes this safe against hostile input: nothing the caller sent (a tracking
parameter we have never heard of, a ``..`` segment, a slug) can reach ``normalized_url`` unless a
per-platform pattern accepted it. It is also why the parameters that *do* identify a post are kept
on purpose: every YouTube form becomes ``https://youtube.com/watch?v=<id>``, so two videos can never
collapse into one URL (the predecessor dropped every query string and merged all YouTube videos).

Deduplicate on ``(platform, post_id)``. ``normalized_url`` is one string per post on reddit,
instagram and youtube; on tiktok, x and meta it keeps the author handle the platform puts in the
path, so the same post reached under a renamed handle or a numeric page id gets another URL.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import SplitResult, parse_qs, unquote, urlsplit

MAX_URL_LENGTH: Final = 2048

SUPPORTED_PLATFORMS: Final[tuple[str, ...]] = ("reddit", "instagram", "tiktok", "youtube", "x", "meta")

#: Other names people give a platform: its former name, or the site we reach through the company's API.
PLATFORM_ALIASES: Final[Mapping[str, str]] = {"twitter": "x", "facebook": "meta"}


def platform_slug(name: object) -> str | None:
    """The platform slug ``name`` stands for, in any letter case (``"YouTube"``, ``"TWITTER"``), or None.

    A slug or an alias of :data:`PLATFORM_ALIASES`; ASCII only, so no Unicode case folding can turn a
    lookalike into a slug.
    """
    if not isinstance(name, str) or not name.isascii():
        return None
    key = name.lower()
    if key in SUPPORTED_PLATFORMS:
        return key
    return PLATFORM_ALIASES.get(key)


class InvalidPostURL(ValueError):
    """The input is not a link to a single post of a supported platform.

    The message is written for the person who pasted the link and never echoes the input back, so it
    is safe to return in an API error body or to log.
    """


@dataclass(frozen=True, slots=True)
class ParsedLink:
    platform: str
    post_id: str
    normalized_url: str


# An exact allow-list: matching on suffixes or substrings is how ``reddit.com.evil.com`` and
# ``evilreddit.com`` get in. Short links that need an HTTP redirect to learn the post (vm.tiktok.com,
# fb.watch, reddit.com/r/<sub>/s/<code>) are deliberately unsupported: this module does no I/O.
_HOST_PLATFORM: Final[Mapping[str, str]] = {
    **{f"{p}reddit.com": "reddit" for p in ("", "www.", "old.", "new.", "np.", "m.")},
    "redd.it": "reddit",
    **{f"{p}instagram.com": "instagram" for p in ("", "www.", "m.")},
    **{f"{p}tiktok.com": "tiktok" for p in ("", "www.", "m.")},
    **{f"{p}youtube.com": "youtube" for p in ("", "www.", "m.")},
    "youtu.be": "youtube",
    **{f"{p}{d}": "x" for p in ("", "www.", "mobile.") for d in ("x.com", "twitter.com")},
    **{f"{p}facebook.com": "meta" for p in ("", "www.", "m.", "web.")},
}

# Messages name sites as users know them; "meta" is our slug, "Facebook" is what they pasted from.
_DISPLAY_NAME: Final[Mapping[str, str]] = {
    "reddit": "Reddit",
    "instagram": "Instagram",
    "tiktok": "TikTok",
    "youtube": "YouTube",
    "x": "X",
    "meta": "Facebook",
}

# Shown when the host is right but the path is not a single post, so the user learns what to paste.
_EXPECTED_SHAPE: Final[Mapping[str, str]] = {
    "reddit": "reddit.com/r/<subreddit>/comments/<id>/ or redd.it/<id>",
    "instagram": "instagram.com/p/<code>/ or instagram.com/reel/<code>/",
    "tiktok": "tiktok.com/@<user>/video/<id>",
    "youtube": "youtube.com/watch?v=<id>, youtu.be/<id> or youtube.com/shorts/<id>",
    "x": "x.com/<user>/status/<id>",
    "meta": "facebook.com/<page>/posts/<id>",
}

_DEFAULT_PORTS: Final[Mapping[str, str]] = {"http": "80", "https": "443"}

# Explicit ASCII classes throughout: ``\d`` and ``\w`` also match non-ASCII digits and letters.
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*(?=:)")
_NUMERIC_ID = re.compile(r"[0-9]{1,25}")
_REDDIT_ID = re.compile(r"[a-z0-9]{1,13}")  # base36
_REDDIT_NAME = re.compile(r"[A-Za-z0-9_\-]{1,32}")  # subreddits and usernames
_INSTAGRAM_CODE = re.compile(r"[A-Za-z0-9_\-]{1,64}")
_INSTAGRAM_USER = re.compile(r"[A-Za-z0-9._]{1,30}")
_TIKTOK_USER = re.compile(r"@([A-Za-z0-9_][A-Za-z0-9_.]{0,23})")
_YOUTUBE_ID = re.compile(r"[A-Za-z0-9_\-]{11}")
_X_USER = re.compile(r"[A-Za-z0-9_]{1,15}")
_X_MEDIA_INDEX = re.compile(r"[0-9]{1,2}")
# Vanity names and numeric page ids; requiring one alphanumeric keeps out "." and "..".
_FACEBOOK_PAGE = re.compile(r"(?=[A-Za-z0-9._\-]*[A-Za-z0-9])[A-Za-z0-9._\-]{1,80}")
# Numeric ids, or the opaque "pfbid..." ids Facebook has issued since 2022 (case-sensitive).
_FACEBOOK_POST_ID = re.compile(r"[0-9]{1,25}|pfbid[0-9A-Za-z]{1,100}")

_INSTAGRAM_KINDS: Final = frozenset({"p", "reel", "reels", "tv"})
_YOUTUBE_PATH_KINDS: Final = frozenset({"shorts", "live", "embed", "v"})

# (post_id, normalized_url), or None when the path is not a shape we accept for that platform.
_Parsed = tuple[str, str] | None
_Parser = Callable[[str, tuple[str, ...], str], _Parsed]


def parse_post_url(url: object) -> ParsedLink:
    """Return the platform, post id and canonical URL of a link to a single post.

    Accepts what people actually paste: surrounding whitespace, no scheme, ``http``, mobile and legacy
    hosts, trailing slashes, slugs, share/tracking parameters, fragments. Raises :class:`InvalidPostURL`
    with a message for the user on anything else; never raises another exception.
    """
    platform, host, split = _locate(url)
    segments = _path_segments(split.path)
    parsed = _PARSERS[platform](host, segments, split.query)
    if parsed is None:
        raise InvalidPostURL(
            f"not a link to a single {_DISPLAY_NAME[platform]} post; expected a URL like {_EXPECTED_SHAPE[platform]}"
        )
    post_id, normalized_url = parsed
    return ParsedLink(platform=platform, post_id=post_id, normalized_url=normalized_url)


def detect_platform(url: object) -> str | None:
    """The platform whose site ``url`` points at, or None; says nothing about whether it names a post.

    Lets a caller tell "a YouTube link, but not to a video" apart from "not a platform we support".
    Applies the same scheme, userinfo, port and host checks as :func:`parse_post_url`, so a hostile
    URL is never attributed to a platform.
    """
    try:
        platform, _, _ = _locate(url)
    except InvalidPostURL:
        return None
    return platform


def _locate(url: object) -> tuple[str, str, SplitResult]:
    """Validate everything up to and including the host; return (platform, host, split URL)."""
    if not isinstance(url, str):
        raise InvalidPostURL("URL must be a string")
    text = url.strip()
    if not text:
        raise InvalidPostURL("URL is empty")
    if len(text) > MAX_URL_LENGTH:
        raise InvalidPostURL(f"URL is too long (at most {MAX_URL_LENGTH} characters)")
    # urlsplit silently deletes tabs and newlines and browsers silently drop or re-encode other
    # characters; refusing them keeps what we validate identical to what a browser would open.
    if any(ch <= " " or ch == "\x7f" for ch in text):
        raise InvalidPostURL("URL contains whitespace or control characters")
    if not text.isascii():
        # Also stops IDN lookalike hosts (a Cyrillic "e", fullwidth letters) before any host comparison.
        raise InvalidPostURL("URL contains non-ASCII characters")
    if "\\" in text:
        # Browsers read "\" as "/", so "https://evil.com\@reddit.com" would go somewhere unexpected.
        raise InvalidPostURL("URL must not contain backslashes")

    text = _with_scheme(text)
    try:
        split = urlsplit(text)
    except ValueError:  # e.g. an unbalanced "[" in the host
        raise InvalidPostURL("URL is malformed") from None
    host = _host(split)
    platform = _HOST_PLATFORM.get(host)
    if platform is None:
        raise InvalidPostURL("not a post URL of a supported platform (" + ", ".join(_DISPLAY_NAME.values()) + ")")
    return platform, host, split


def _host(split: SplitResult) -> str:
    """The lowercase host, refusing userinfo, IP literals and non-default ports."""
    netloc = split.netloc
    if not netloc:
        raise InvalidPostURL("URL has no host")
    if "@" in netloc:
        raise InvalidPostURL("URL must not contain a username or password")
    if "[" in netloc or "]" in netloc:
        raise InvalidPostURL("not a post URL of a supported platform (IP addresses are not accepted)")
    host, has_port, port = netloc.partition(":")
    if has_port and port != _DEFAULT_PORTS[split.scheme]:
        raise InvalidPostURL("URL must not specify a port")
    host = host.lower()
    if host.endswith("."):
        # "reddit.com." is the same DNS name as "reddit.com"; only a single root dot is meaningful.
        host = host[:-1]
    return host


def _with_scheme(text: str) -> str:
    """Return ``text`` with a lowercase http(s) scheme, adding https when the user left it out."""
    if text.startswith("//"):
        return "https:" + text
    scheme_match = _SCHEME.match(text)
    # "reddit.com:443/r/..." looks like scheme "reddit.com"; real schemes never contain a dot.
    if scheme_match is None or "." in scheme_match.group():
        return "https://" + text
    scheme = scheme_match.group().lower()
    if scheme not in _DEFAULT_PORTS:
        raise InvalidPostURL("URL must use http or https")
    rest = text[len(scheme) + 1 :]
    if not rest.startswith("//"):
        raise InvalidPostURL("URL is malformed (expected // after the scheme)")
    return f"{scheme}:{rest}"


def _path_segments(path: str) -> tuple[str, ...]:
    """Split the path, allowing one trailing slash and no other empty segment."""
    segments = path.split("/")[1:] if path else []
    if segments and segments[-1] == "":
        segments.pop()
    if "" in segments:
        raise InvalidPostURL("URL path must not contain empty segments ('//')")
    if any(unquote(segment) in (".", "..") for segment in segments):
        raise InvalidPostURL("URL path must not contain '.' or '..' segments")
    return tuple(segments)


def _query_value(query: str, name: str) -> str | None:
    """The value of parameter ``name``; a repeated parameter is accepted only if every copy agrees."""
    values = set(parse_qs(query, keep_blank_values=True).get(name, ()))
    if len(values) > 1:
        # Which copy a platform honours is its own business; guessing could pick the wrong post.
        raise InvalidPostURL(f"URL has conflicting values for the {name!r} parameter")
    return values.pop() if values else None


def _parse_reddit(host: str, segments: tuple[str, ...], query: str) -> _Parsed:
    if host == "redd.it":
        if len(segments) != 1:
            return None
        raw_id = segments[0]
    elif len(segments) in (2, 3) and segments[0] in ("comments", "gallery"):
        raw_id = segments[1]
    elif (
        len(segments) in (4, 5)
        and segments[0] in ("r", "u", "user")
        and segments[2] == "comments"
        and _REDDIT_NAME.fullmatch(segments[1])
    ):
        # A sixth segment would be a comment id: a link to a comment is not a claim about a post.
        raw_id = segments[3]
    else:
        return None
    # Reddit ids are base36 and lowercase; one canonical URL without the subreddit lets redd.it
    # links, /r/ links and links from before a subreddit rename all normalise to the same string.
    post_id = raw_id.lower()
    if not _REDDIT_ID.fullmatch(post_id):
        return None
    return post_id, f"https://reddit.com/comments/{post_id}"


def _parse_instagram(host: str, segments: tuple[str, ...], query: str) -> _Parsed:
    if len(segments) == 3 and _INSTAGRAM_USER.fullmatch(segments[0]):
        # Newer share links put the author first: /<user>/p/<code>/ and /<user>/reel/<code>/.
        segments = segments[1:]
    if len(segments) != 2 or segments[0] not in _INSTAGRAM_KINDS:
        return None
    code = segments[1]
    if not _INSTAGRAM_CODE.fullmatch(code):
        return None
    # Reels and IGTV are posts with the same shortcode space; /p/<code> opens any of them.
    return code, f"https://instagram.com/p/{code}"


def _parse_tiktok(host: str, segments: tuple[str, ...], query: str) -> _Parsed:
    if len(segments) != 3 or segments[1] != "video":
        return None
    user_match = _TIKTOK_USER.fullmatch(segments[0])
    video_id = segments[2]
    if user_match is None or not _NUMERIC_ID.fullmatch(video_id):
        return None
    # TikTok handles are case-insensitive; lowercasing makes "@Name" and "@name" one URL.
    user = user_match.group(1).lower()
    return video_id, f"https://tiktok.com/@{user}/video/{video_id}"


def _parse_youtube(host: str, segments: tuple[str, ...], query: str) -> _Parsed:
    video_id: str | None
    if host == "youtu.be":
        video_id = segments[0] if len(segments) == 1 else None
    elif segments == ("watch",):
        video_id = _query_value(query, "v")
    elif len(segments) == 2 and segments[0] in _YOUTUBE_PATH_KINDS:
        video_id = segments[1]
    else:
        return None
    if video_id is None or not _YOUTUBE_ID.fullmatch(video_id):
        return None
    # The id lives in the query for the canonical form: this is the parameter that must survive.
    return video_id, f"https://youtube.com/watch?v={video_id}"


def _parse_x(host: str, segments: tuple[str, ...], query: str) -> _Parsed:
    if len(segments) == 4 and segments[:3] == ("i", "web", "status"):
        # Links without an author handle; x.com serves /i/status/<id> for any post.
        segments = ("i", "status", segments[3])
    if len(segments) == 5 and segments[3] in ("photo", "video") and _X_MEDIA_INDEX.fullmatch(segments[4]):
        # "/photo/1" selects an attachment of the same post.
        segments = segments[:3]
    if len(segments) != 3 or segments[1] not in ("status", "statuses"):
        return None
    user, status_id = segments[0], segments[2]
    if not _X_USER.fullmatch(user) or not _NUMERIC_ID.fullmatch(status_id):
        return None
    # Handles are case-insensitive on X; twitter.com and every subdomain become x.com.
    return status_id, f"https://x.com/{user.lower()}/status/{status_id}"


def _parse_meta(host: str, segments: tuple[str, ...], query: str) -> _Parsed:
    if segments in (("permalink.php",), ("story.php",)):
        post_id, page = _query_value(query, "story_fbid"), _query_value(query, "id")
        kind = "posts"
        if post_id is None or page is None or not _NUMERIC_ID.fullmatch(page):
            return None
    elif len(segments) == 3 and segments[1] in ("posts", "videos"):
        page, kind, post_id = segments
    elif len(segments) == 4 and segments[1] == "videos":
        # /<page>/videos/<title-slug>/<id>/: the slug is decoration.
        page, kind, post_id = segments[0], "videos", segments[3]
    else:
        return None
    if not _FACEBOOK_PAGE.fullmatch(page) or not _FACEBOOK_POST_ID.fullmatch(post_id):
        return None
    # A video id and a post id are different Graph objects, so videos keep their own path.
    return post_id, f"https://facebook.com/{page.lower()}/{kind}/{post_id}"


# Adding a platform is a parser above, its hosts and expected shape, and one line here.
_PARSERS: Final[Mapping[str, _Parser]] = {
    "reddit": _parse_reddit,
    "instagram": _parse_instagram,
    "tiktok": _parse_tiktok,
    "youtube": _parse_youtube,
    "x": _parse_x,
    "meta": _parse_meta,
}
