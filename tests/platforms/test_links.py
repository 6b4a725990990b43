"""platforms.links: the pure parser that decides which post a link names. No Django needed."""

from __future__ import annotations

import re
import string

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from platforms.links import (
    MAX_URL_LENGTH,
    SUPPORTED_PLATFORMS,
    InvalidPostURL,
    ParsedLink,
    detect_platform,
    parse_post_url,
)

YT_ID = "dQw4w9WgXcQ"
YT_CANONICAL = f"https://youtube.com/watch?v={YT_ID}"
TT_ID = "7234567890123456789"
X_ID = "1790000000000000001"
FB_ID = "123456789012345"

# (input, platform, post_id, normalized_url)
VALID: list[tuple[str, str, str, str]] = [
    # reddit: every form of one post normalises to the id-only URL
    (
        "https://www.reddit.com/r/python/comments/1abcde/my_post_title/",
        "reddit",
        "1abcde",
        "https://reddit.com/comments/1abcde",
    ),
    ("https://reddit.com/r/python/comments/1abcde", "reddit", "1abcde", "https://reddit.com/comments/1abcde"),
    (
        "https://old.reddit.com/r/Python/comments/1abcde/my_post_title/?utm_source=share&utm_medium=web2x",
        "reddit",
        "1abcde",
        "https://reddit.com/comments/1abcde",
    ),
    ("https://new.reddit.com/r/python/comments/1abcde/", "reddit", "1abcde", "https://reddit.com/comments/1abcde"),
    ("https://np.reddit.com/r/python/comments/1abcde/x/", "reddit", "1abcde", "https://reddit.com/comments/1abcde"),
    (
        "https://m.reddit.com/r/python/comments/1abcde/slug?context=3#top",
        "reddit",
        "1abcde",
        "https://reddit.com/comments/1abcde",
    ),
    ("https://redd.it/1abcde", "reddit", "1abcde", "https://reddit.com/comments/1abcde"),
    ("redd.it/1ABCDE/", "reddit", "1abcde", "https://reddit.com/comments/1abcde"),
    ("reddit.com/r/x/comments/abc/", "reddit", "abc", "https://reddit.com/comments/abc"),
    (
        "https://www.reddit.com/user/some-user/comments/1abcde/hello/",
        "reddit",
        "1abcde",
        "https://reddit.com/comments/1abcde",
    ),
    ("https://www.reddit.com/u/someone/comments/1abcde", "reddit", "1abcde", "https://reddit.com/comments/1abcde"),
    ("https://www.reddit.com/gallery/1abcde", "reddit", "1abcde", "https://reddit.com/comments/1abcde"),
    ("https://reddit.com/comments/1abcde", "reddit", "1abcde", "https://reddit.com/comments/1abcde"),
    (
        "  HTTPS://WWW.REDDIT.COM/r/python/comments/1ABCDE/Title/  ",
        "reddit",
        "1abcde",
        "https://reddit.com/comments/1abcde",
    ),
    ("http://www.reddit.com:80/r/python/comments/1abcde/", "reddit", "1abcde", "https://reddit.com/comments/1abcde"),
    ("https://reddit.com:443/r/python/comments/1abcde/", "reddit", "1abcde", "https://reddit.com/comments/1abcde"),
    ("reddit.com:443/r/python/comments/1abcde/", "reddit", "1abcde", "https://reddit.com/comments/1abcde"),
    ("//reddit.com/r/python/comments/1abcde/", "reddit", "1abcde", "https://reddit.com/comments/1abcde"),
    ("https://reddit.com./r/python/comments/1abcde/", "reddit", "1abcde", "https://reddit.com/comments/1abcde"),
    (
        "https://www.reddit.com/r/python/comments/1abcde/%C3%A9t%C3%A9/",
        "reddit",
        "1abcde",
        "https://reddit.com/comments/1abcde",
    ),
    # instagram: reels, tv and author-prefixed links all become /p/<code>; the code keeps its case
    ("https://www.instagram.com/p/CxYz_12-AbC/", "instagram", "CxYz_12-AbC", "https://instagram.com/p/CxYz_12-AbC"),
    (
        "https://instagram.com/p/CxYz_12-AbC/?igsh=MWQ1ZGUxMzBkMA==&utm_source=qr",
        "instagram",
        "CxYz_12-AbC",
        "https://instagram.com/p/CxYz_12-AbC",
    ),
    (
        "https://www.instagram.com/reel/CxYz_12-AbC/?igshid=abc123",
        "instagram",
        "CxYz_12-AbC",
        "https://instagram.com/p/CxYz_12-AbC",
    ),
    ("https://www.instagram.com/reels/CxYz_12-AbC/", "instagram", "CxYz_12-AbC", "https://instagram.com/p/CxYz_12-AbC"),
    ("https://m.instagram.com/tv/CxYz_12-AbC", "instagram", "CxYz_12-AbC", "https://instagram.com/p/CxYz_12-AbC"),
    (
        "https://www.instagram.com/some.creator/p/CxYz_12-AbC/?img_index=2",
        "instagram",
        "CxYz_12-AbC",
        "https://instagram.com/p/CxYz_12-AbC",
    ),
    (
        "https://www.instagram.com/some_creator/reel/CxYz_12-AbC/",
        "instagram",
        "CxYz_12-AbC",
        "https://instagram.com/p/CxYz_12-AbC",
    ),
    ("instagram.com/p/CxYz_12-AbC#comments", "instagram", "CxYz_12-AbC", "https://instagram.com/p/CxYz_12-AbC"),
    # tiktok
    (
        f"https://www.tiktok.com/@creator.name/video/{TT_ID}",
        "tiktok",
        TT_ID,
        f"https://tiktok.com/@creator.name/video/{TT_ID}",
    ),
    (
        f"https://www.tiktok.com/@Creator_Name/video/{TT_ID}?is_from_webapp=1&sender_device=pc&web_id=7",
        "tiktok",
        TT_ID,
        f"https://tiktok.com/@creator_name/video/{TT_ID}",
    ),
    (
        f"https://m.tiktok.com/@creator/video/{TT_ID}/?_r=1&_t=8abc",
        "tiktok",
        TT_ID,
        f"https://tiktok.com/@creator/video/{TT_ID}",
    ),
    (f"tiktok.com/@creator/video/{TT_ID}", "tiktok", TT_ID, f"https://tiktok.com/@creator/video/{TT_ID}"),
    # youtube: every form becomes watch?v=<id>
    (f"https://www.youtube.com/watch?v={YT_ID}", "youtube", YT_ID, YT_CANONICAL),
    (f"https://youtube.com/watch?v={YT_ID}&feature=share&si=AbCdEf&t=42s", "youtube", YT_ID, YT_CANONICAL),
    (f"https://www.youtube.com/watch?app=desktop&v={YT_ID}&list=PL123&index=4", "youtube", YT_ID, YT_CANONICAL),
    (f"https://m.youtube.com/watch?v={YT_ID}&pp=ygUEdGVzdA%3D%3D", "youtube", YT_ID, YT_CANONICAL),
    (f"https://www.youtube.com/watch/?v={YT_ID}", "youtube", YT_ID, YT_CANONICAL),
    (f"https://www.youtube.com/watch?v={YT_ID}&v={YT_ID}", "youtube", YT_ID, YT_CANONICAL),
    (f"https://youtu.be/{YT_ID}", "youtube", YT_ID, YT_CANONICAL),
    (f"https://youtu.be/{YT_ID}?si=xyz123&t=10", "youtube", YT_ID, YT_CANONICAL),
    (f"youtu.be/{YT_ID}/", "youtube", YT_ID, YT_CANONICAL),
    (f"https://www.youtube.com/shorts/{YT_ID}?feature=share", "youtube", YT_ID, YT_CANONICAL),
    (f"https://youtube.com/shorts/{YT_ID}/", "youtube", YT_ID, YT_CANONICAL),
    (f"https://www.youtube.com/live/{YT_ID}?si=abc", "youtube", YT_ID, YT_CANONICAL),
    (f"https://www.youtube.com/embed/{YT_ID}?autoplay=1", "youtube", YT_ID, YT_CANONICAL),
    (f"https://www.youtube.com/v/{YT_ID}", "youtube", YT_ID, YT_CANONICAL),
    (f"http://WWW.YouTube.com/watch?v={YT_ID}#t=30", "youtube", YT_ID, YT_CANONICAL),
    (
        "https://www.youtube.com/watch?v=a-b_c-d_e-f",
        "youtube",
        "a-b_c-d_e-f",
        "https://youtube.com/watch?v=a-b_c-d_e-f",
    ),
    # x: twitter.com and every subdomain become x.com; the handle is case-insensitive
    (f"https://x.com/SomeUser/status/{X_ID}", "x", X_ID, f"https://x.com/someuser/status/{X_ID}"),
    (f"https://twitter.com/someuser/status/{X_ID}?s=20&t=AbCdEfGh", "x", X_ID, f"https://x.com/someuser/status/{X_ID}"),
    (f"https://www.twitter.com/someuser/status/{X_ID}/", "x", X_ID, f"https://x.com/someuser/status/{X_ID}"),
    (
        f"https://mobile.twitter.com/someuser/status/{X_ID}?ref_src=twsrc%5Etfw",
        "x",
        X_ID,
        f"https://x.com/someuser/status/{X_ID}",
    ),
    (f"https://mobile.x.com/someuser/status/{X_ID}", "x", X_ID, f"https://x.com/someuser/status/{X_ID}"),
    (f"https://www.x.com/some_user/status/{X_ID}/photo/1", "x", X_ID, f"https://x.com/some_user/status/{X_ID}"),
    (f"https://x.com/someuser/status/{X_ID}/video/1", "x", X_ID, f"https://x.com/someuser/status/{X_ID}"),
    (f"https://twitter.com/someuser/statuses/{X_ID}", "x", X_ID, f"https://x.com/someuser/status/{X_ID}"),
    (f"https://twitter.com/i/web/status/{X_ID}", "x", X_ID, f"https://x.com/i/status/{X_ID}"),
    # meta (facebook)
    (f"https://www.facebook.com/SomePage/posts/{FB_ID}", "meta", FB_ID, f"https://facebook.com/somepage/posts/{FB_ID}"),
    (
        f"https://m.facebook.com/somepage/posts/{FB_ID}/?fbclid=IwAR0abc&mibextid=xyz",
        "meta",
        FB_ID,
        f"https://facebook.com/somepage/posts/{FB_ID}",
    ),
    (
        f"https://web.facebook.com/some.page/posts/{FB_ID}?__cft__[0]=AZX&__tn__=%2CO%2CP-R",
        "meta",
        FB_ID,
        f"https://facebook.com/some.page/posts/{FB_ID}",
    ),
    (
        "https://www.facebook.com/somepage/posts/pfbid02AbCdEfGhIjKlMnOp",
        "meta",
        "pfbid02AbCdEfGhIjKlMnOp",
        "https://facebook.com/somepage/posts/pfbid02AbCdEfGhIjKlMnOp",
    ),
    (
        f"https://www.facebook.com/permalink.php?story_fbid={FB_ID}&id=100064",
        "meta",
        FB_ID,
        f"https://facebook.com/100064/posts/{FB_ID}",
    ),
    (
        f"https://m.facebook.com/story.php?id=100064&story_fbid={FB_ID}&ref=share",
        "meta",
        FB_ID,
        f"https://facebook.com/100064/posts/{FB_ID}",
    ),
    (
        f"https://www.facebook.com/somepage/videos/{FB_ID}/",
        "meta",
        FB_ID,
        f"https://facebook.com/somepage/videos/{FB_ID}",
    ),
    (
        f"https://www.facebook.com/somepage/videos/a-video-title/{FB_ID}/",
        "meta",
        FB_ID,
        f"https://facebook.com/somepage/videos/{FB_ID}",
    ),
]


@pytest.mark.parametrize(("url", "platform", "post_id", "normalized_url"), VALID)
def test_valid_url_parses_to_its_canonical_form(url: str, platform: str, post_id: str, normalized_url: str) -> None:
    assert parse_post_url(url) == ParsedLink(platform=platform, post_id=post_id, normalized_url=normalized_url)


@pytest.mark.parametrize(("url", "platform", "post_id", "normalized_url"), VALID)
def test_normalized_url_parses_to_itself(url: str, platform: str, post_id: str, normalized_url: str) -> None:
    assert parse_post_url(normalized_url) == parse_post_url(url)


@pytest.mark.parametrize(("url", "platform", "post_id", "normalized_url"), VALID)
def test_detect_platform_agrees_with_parse(url: str, platform: str, post_id: str, normalized_url: str) -> None:
    assert detect_platform(url) == platform


SAME_POST: list[list[str]] = [
    [
        "https://www.reddit.com/r/python/comments/1abcde/title/",
        "https://old.reddit.com/r/Python/comments/1ABCDE/?utm_source=share",
        "https://redd.it/1abcde",
        "reddit.com/r/renamed_sub/comments/1abcde",
        "https://www.reddit.com/gallery/1abcde",
    ],
    [
        "https://www.instagram.com/p/CxYz_12-AbC/",
        "https://instagram.com/reel/CxYz_12-AbC/?igsh=abc",
        "https://m.instagram.com/reels/CxYz_12-AbC",
        "https://www.instagram.com/creator/p/CxYz_12-AbC/",
    ],
    [
        f"https://www.tiktok.com/@creator/video/{TT_ID}?is_from_webapp=1",
        f"https://m.tiktok.com/@Creator/video/{TT_ID}/",
        f"tiktok.com/@creator/video/{TT_ID}",
    ],
    [
        f"https://www.youtube.com/watch?v={YT_ID}&feature=youtu.be",
        f"https://youtu.be/{YT_ID}?si=abc",
        f"https://m.youtube.com/watch?v={YT_ID}",
        f"https://youtube.com/shorts/{YT_ID}",
        f"https://www.youtube.com/live/{YT_ID}",
        f"https://www.youtube.com/embed/{YT_ID}",
    ],
    [
        f"https://twitter.com/someuser/status/{X_ID}?s=20",
        f"https://x.com/SomeUser/status/{X_ID}",
        f"https://mobile.twitter.com/someuser/status/{X_ID}/photo/1",
    ],
    [
        f"https://www.facebook.com/somepage/posts/{FB_ID}?fbclid=abc",
        f"https://m.facebook.com/SomePage/posts/{FB_ID}/",
        f"https://web.facebook.com/somepage/posts/{FB_ID}",
    ],
]


@pytest.mark.parametrize("variants", SAME_POST, ids=SUPPORTED_PLATFORMS)
def test_variants_of_one_post_normalise_identically(variants: list[str]) -> None:
    assert len({parse_post_url(url) for url in variants}) == 1


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("https://www.youtube.com/watch?v=aaaaaaaaaaa", "https://www.youtube.com/watch?v=aaaaaaaaaab"),
        ("https://www.youtube.com/watch?v=AAAAAAAAAAA", "https://www.youtube.com/watch?v=aaaaaaaaaaa"),
        ("https://youtu.be/aaaaaaaaaaa", "https://youtube.com/shorts/bbbbbbbbbbb"),
        (
            f"https://www.youtube.com/watch?v={YT_ID}&list=PL1",
            f"https://www.youtube.com/watch?list=PL1&v={YT_ID[::-1]}",
        ),
    ],
)
def test_different_youtube_videos_never_share_a_url(first: str, second: str) -> None:
    one, two = parse_post_url(first), parse_post_url(second)
    assert one.post_id != two.post_id
    assert one.normalized_url != two.normalized_url


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("https://www.instagram.com/p/AbCdEfGhIjK/", "https://www.instagram.com/p/abcdefghijk/"),
        ("https://redd.it/abc123", "https://redd.it/abc124"),
        (f"https://x.com/u/status/{X_ID}", f"https://x.com/u/status/{X_ID}2"),
    ],
)
def test_different_posts_never_share_a_url(first: str, second: str) -> None:
    assert parse_post_url(first).normalized_url != parse_post_url(second).normalized_url


HOSTILE: list[object] = [
    # not a string, empty, too long
    None,
    123,
    b"https://redd.it/abc",
    ["https://redd.it/abc"],
    "",
    "   ",
    "\t\n",
    "https://www.reddit.com/r/python/comments/abc/" + "a" * MAX_URL_LENGTH,
    # schemes
    "javascript:alert(1)",
    "JaVaScRiPt:alert(document.cookie)//reddit.com/r/x/comments/abc",
    "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
    "ftp://reddit.com/r/x/comments/abc/",
    "file:///etc/passwd",
    "mailto:someone@reddit.com",
    "ws://reddit.com/r/x/comments/abc/",
    "https:reddit.com/r/x/comments/abc/",
    "https:/reddit.com/r/x/comments/abc/",
    "https:///r/x/comments/abc/",
    "https://",
    # userinfo and host confusion
    "https://user:pass@reddit.com/r/x/comments/abc/",
    "https://user@reddit.com/r/x/comments/abc/",
    "https://reddit.com@evil.com/r/x/comments/abc/",
    "https://reddit.com%40evil.com/r/x/comments/abc/",
    "https://evil.com\\@reddit.com/r/x/comments/abc/",
    "https:\\\\reddit.com\\r\\x\\comments\\abc",
    # ports
    "https://reddit.com:8080/r/x/comments/abc/",
    "https://reddit.com:80/r/x/comments/abc/",
    "http://reddit.com:443/r/x/comments/abc/",
    "https://reddit.com:/r/x/comments/abc/",
    "https://reddit.com:443abc/r/x/comments/abc/",
    "https://reddit.com:99999999999/r/x/comments/abc/",
    # IP hosts
    "https://127.0.0.1/r/x/comments/abc/",
    "https://[::1]/r/x/comments/abc/",
    "https://[reddit.com/r/x/comments/abc/",
    "https://2130706433/r/x/comments/abc/",
    "http://0x7f000001/watch?v=dQw4w9WgXcQ",
    # lookalike hosts
    "https://reddit.com.evil.com/r/x/comments/abc/",
    "https://evilreddit.com/r/x/comments/abc/",
    "https://reddit.co/r/x/comments/abc/",
    "https://api.reddit.com/r/x/comments/abc/",
    "https://r\u0435ddit.com/r/x/comments/abc/",  # Cyrillic "e"
    "https://\uff52eddit.com/r/x/comments/abc/",  # fullwidth "r"
    "https://xn--rddit-7nf.com/r/x/comments/abc/",
    "https://reddit\u3002com/r/x/comments/abc/",  # ideographic full stop
    "https://reddit.com../r/x/comments/abc/",
    "https://youtube.com.evil.com/watch?v=dQw4w9WgXcQ",
    "https://notyoutube.com/watch?v=dQw4w9WgXcQ",
    "https://music.youtube.com/watch?v=dQw4w9WgXcQ",
    "https://fb.com/page/posts/123",
    "https://vm.tiktok.com/ZMabc123/",
    "https://t.co/abc123",
    "https://example.com/",
    # path traversal and empty segments
    "https://www.reddit.com/r/x/comments/abc/../../../etc/passwd",
    "https://www.reddit.com/r/x/comments/abc/..",
    "https://www.reddit.com/r/../comments/abc/",
    "https://www.reddit.com/r/%2e%2e/comments/abc/",
    "https://www.instagram.com/p/./",
    "https://www.youtube.com/./watch?v=dQw4w9WgXcQ",
    "https://www.reddit.com//r/x/comments/abc/",
    "https://www.reddit.com/r/x/comments/abc//",
    # control characters, whitespace inside, invisible unicode
    "https://www.reddit.com/r/x/comments/abc/\x00",
    "https://www.reddit.com/r/x/comments/a\nbc/",
    "https://www.red\tdit.com/r/x/comments/abc/",
    "https://www.reddit.com/r/x/comments/abc/\x7f",
    "https://www.reddit.com/r/x/comments/ab c/",
    "https://www.reddit.com/r/x/comments/abc/\u202e",
    "https://www.reddit.com/r/x/comments/abc\u200b/",
    "\x1bhttps://www.reddit.com/r/x/comments/abc/",
    # right host, not a single post
    "https://www.reddit.com/",
    "https://www.reddit.com/r/python/",
    "https://www.reddit.com/r/python/comments/",
    "https://www.reddit.com/r/python/comments/abc/title/def456/",
    "https://www.reddit.com/r/python/s/AbCdEfGh",
    "https://redd.it/",
    "https://redd.it/abc/def",
    "https://www.instagram.com/creator/",
    "https://www.instagram.com/stories/creator/3123456789/",
    "https://www.instagram.com/p/",
    "https://www.tiktok.com/@creator",
    "https://www.tiktok.com/@creator/photo/7234567890123456789",
    "https://www.tiktok.com/creator/video/7234567890123456789",
    "https://www.youtube.com/",
    "https://www.youtube.com/watch",
    "https://www.youtube.com/watch?list=PL123",
    "https://www.youtube.com/watch?v=",
    "https://www.youtube.com/@channel",
    "https://www.youtube.com/channel/UC1234567890123456789012",
    "https://www.youtube.com/playlist?list=PL123",
    "https://youtu.be/",
    "https://x.com/someuser",
    "https://x.com/someuser/likes",
    "https://x.com/i/status/",
    "https://www.facebook.com/somepage",
    "https://www.facebook.com/groups/123/posts/456/",
    "https://www.facebook.com/share/p/AbCdEf/",
    "https://www.facebook.com/permalink.php?story_fbid=123",
    "https://www.facebook.com/permalink.php?id=100064",
    # ids with bad characters or the wrong shape
    "https://www.reddit.com/r/x/comments/ab-c/",
    "https://www.reddit.com/r/x/comments/ab%63/",
    "https://www.reddit.com/r/x/comments/abcdefghijklmnop/",
    "https://www.reddit.com/r/sub.name/comments/abc/",
    "https://www.instagram.com/p/Cx$Yz/",
    "https://www.instagram.com/p/%43xYz/",
    "https://www.tiktok.com/@creator/video/72345abc",
    "https://www.tiktok.com/@creator/video/\uff17234",
    "https://www.tiktok.com/@.creator/video/7234567890123456789",
    "https://www.tiktok.com/@/video/7234567890123456789",
    "https://www.youtube.com/watch?v=dQw4w9WgXc",
    "https://www.youtube.com/watch?v=dQw4w9WgXcQQ",
    "https://www.youtube.com/watch?v=dQw4w9WgX%3CQ",
    "https://www.youtube.com/watch?v=dQw4w9<gXcQ",
    "https://www.youtube.com/watch?v=dQw4w9WgXcQ&v=aaaaaaaaaaa",
    "https://youtu.be/dQw4w9WgXc!",
    "https://www.youtube.com/shorts/dQw4w9WgXc",
    "https://x.com/someuser/status/12345abc",
    "https://x.com/some.user/status/1234",
    "https://x.com/someuser/status/-1234",
    "https://x.com/someuser/status/1234/photo/1/2",
    "https://www.facebook.com/somepage/posts/12ab34",
    "https://www.facebook.com/../posts/123",
    "https://www.facebook.com/permalink.php?story_fbid=123&id=somepage",
    "https://www.facebook.com/permalink.php?story_fbid=123&story_fbid=456&id=1",
]


@pytest.mark.parametrize("url", HOSTILE)
def test_hostile_or_unsupported_input_is_rejected(url: object) -> None:
    with pytest.raises(InvalidPostURL):
        parse_post_url(url)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (None, "URL must be a string"),
        ("  ", "URL is empty"),
        ("https://redd.it/" + "a" * 3000, "URL is too long"),
        ("javascript:alert(1)", "URL must use http or https"),
        ("ftp://reddit.com/r/x/comments/abc", "URL must use http or https"),
        ("https://user:pass@reddit.com/r/x/comments/abc", "username or password"),
        ("https://reddit.com:8443/r/x/comments/abc", "port"),
        ("https://r\u0435ddit.com/r/x/comments/abc", "non-ASCII"),
        ("https://example.com/r/x/comments/abc", "not a post URL of a supported platform"),
        ("https://www.reddit.com/r/x/comments/abc/../..", "'.' or '..'"),
        (
            "https://www.youtube.com/@channel",
            "not a link to a single YouTube post; expected a URL like youtube.com/watch?v=<id>",
        ),
        ("https://www.youtube.com/watch?v=aaaaaaaaaaa&v=bbbbbbbbbbb", "conflicting values for the 'v' parameter"),
        ("https://www.facebook.com/somepage", "not a link to a single Facebook post"),
    ],
)
def test_rejection_message_tells_the_user_what_is_wrong(url: object, message: str) -> None:
    with pytest.raises(InvalidPostURL, match=re.escape(message)):
        parse_post_url(url)


def test_invalid_post_url_is_a_value_error() -> None:
    assert issubclass(InvalidPostURL, ValueError)


def test_rejection_message_does_not_echo_the_input() -> None:
    secret = "https://user:hunter2@reddit.com/r/x/comments/abc"
    with pytest.raises(InvalidPostURL) as excinfo:
        parse_post_url(secret)
    assert "hunter2" not in str(excinfo.value)


def test_parsed_link_is_immutable() -> None:
    link = parse_post_url("https://redd.it/abc")
    with pytest.raises(AttributeError):
        link.post_id = "other"  # type: ignore[misc]


def test_supported_platforms_are_the_six_slugs() -> None:
    assert SUPPORTED_PLATFORMS == ("reddit", "instagram", "tiktok", "youtube", "x", "meta")


@pytest.mark.parametrize(
    ("url", "platform"),
    [
        ("https://www.youtube.com/@channel", "youtube"),
        ("https://www.reddit.com/r/python/", "reddit"),
        ("twitter.com/someuser", "x"),
        ("https://example.com/watch?v=dQw4w9WgXcQ", None),
        ("https://user:pass@reddit.com/r/x/comments/abc", None),
        ("https://reddit.com.evil.com/", None),
        ("javascript:alert(1)", None),
        (None, None),
        ("", None),
    ],
)
def test_detect_platform_names_the_site_or_none(url: object, platform: str | None) -> None:
    assert detect_platform(url) == platform


# --- properties ---------------------------------------------------------------------------------

URL_PREFIXES = [
    "",
    "https://",
    "http://",
    "https://www.reddit.com/",
    "https://www.reddit.com/r/python/comments/",
    "https://redd.it/",
    "https://www.instagram.com/p/",
    "https://www.tiktok.com/@creator/video/",
    "https://www.youtube.com/watch?v=",
    "https://youtu.be/",
    "https://x.com/someuser/status/",
    "https://www.facebook.com/",
    "https://www.facebook.com/permalink.php?story_fbid=",
]


def _assert_parses_or_rejects_cleanly(url: str) -> None:
    try:
        link = parse_post_url(url)
    except InvalidPostURL:
        return
    assert link.platform in SUPPORTED_PLATFORMS
    assert link.normalized_url.startswith("https://")
    assert parse_post_url(link.normalized_url) == link


@given(st.text())
@example("https://\udcff")
@example("https://reddit.com:0/")
def test_arbitrary_text_parses_or_raises_invalid_post_url(text: str) -> None:
    _assert_parses_or_rejects_cleanly(text)


@given(st.sampled_from(URL_PREFIXES), st.text(alphabet=st.characters(codec="ascii")))
def test_arbitrary_ascii_after_a_plausible_prefix_parses_or_raises_invalid_post_url(prefix: str, rest: str) -> None:
    _assert_parses_or_rejects_cleanly(prefix + rest)


_BASE36 = string.ascii_lowercase + string.digits
_CODE = string.ascii_letters + string.digits + "_-"


def _case_variants(text: str) -> st.SearchStrategy[str]:
    return st.lists(st.booleans(), min_size=len(text), max_size=len(text)).map(
        lambda flips: "".join(c.upper() if flip else c for c, flip in zip(text, flips, strict=True))
    )


@st.composite
def real_world_links(draw: st.DrawFn) -> tuple[str, ParsedLink]:
    """A link as people paste it, with the ParsedLink it must produce."""
    platform = draw(st.sampled_from(SUPPORTED_PLATFORMS))
    numeric = str(draw(st.integers(min_value=1, max_value=10**19)))
    if platform == "reddit":
        post_id = draw(st.text(_BASE36, min_size=1, max_size=8))
        host = draw(st.sampled_from(["reddit.com", "www.reddit.com", "old.reddit.com", "m.reddit.com", "redd.it"]))
        sub = draw(st.from_regex(r"[A-Za-z0-9_]{2,21}", fullmatch=True))
        path = f"/{post_id}" if host == "redd.it" else f"/r/{sub}/comments/{post_id}/a_slug"
        expected = ParsedLink("reddit", post_id, f"https://reddit.com/comments/{post_id}")
    elif platform == "instagram":
        post_id = draw(st.text(_CODE, min_size=5, max_size=40))
        host = draw(st.sampled_from(["instagram.com", "www.instagram.com", "m.instagram.com"]))
        path = f"/{draw(st.sampled_from(['p', 'reel', 'reels', 'tv']))}/{post_id}"
        expected = ParsedLink("instagram", post_id, f"https://instagram.com/p/{post_id}")
    elif platform == "tiktok":
        post_id, user = numeric, draw(st.from_regex(r"[a-z0-9_][a-z0-9_.]{0,23}", fullmatch=True))
        host = draw(st.sampled_from(["tiktok.com", "www.tiktok.com", "m.tiktok.com"]))
        path = f"/@{user}/video/{post_id}"
        expected = ParsedLink("tiktok", post_id, f"https://tiktok.com/@{user}/video/{post_id}")
    elif platform == "youtube":
        post_id = draw(st.text(_CODE, min_size=11, max_size=11))
        host = draw(st.sampled_from(["youtube.com", "www.youtube.com", "m.youtube.com", "youtu.be"]))
        if host == "youtu.be":
            path = f"/{post_id}"
        else:
            path = draw(st.sampled_from([f"/watch?v={post_id}", f"/shorts/{post_id}", f"/live/{post_id}"]))
        expected = ParsedLink("youtube", post_id, f"https://youtube.com/watch?v={post_id}")
    elif platform == "x":
        post_id, user = numeric, draw(st.from_regex(r"[a-z0-9_]{1,15}", fullmatch=True))
        host = draw(st.sampled_from(["x.com", "twitter.com", "www.twitter.com", "mobile.twitter.com"]))
        path = f"/{user}/status/{post_id}"
        expected = ParsedLink("x", post_id, f"https://x.com/{user}/status/{post_id}")
    else:
        post_id, page = numeric, draw(st.from_regex(r"[a-z][a-z0-9.]{4,30}", fullmatch=True))
        host = draw(st.sampled_from(["facebook.com", "www.facebook.com", "m.facebook.com", "web.facebook.com"]))
        path = f"/{page}/posts/{post_id}"
        expected = ParsedLink("meta", post_id, f"https://facebook.com/{page}/posts/{post_id}")

    scheme = draw(st.sampled_from(["https://", "http://", "HTTPS://", ""]))
    host = draw(_case_variants(host))
    tracking = draw(
        st.lists(
            st.tuples(
                st.sampled_from(
                    [
                        "utm_source",
                        "utm_medium",
                        "fbclid",
                        "gclid",
                        "igshid",
                        "igsh",
                        "si",
                        "feature",
                        "ref",
                        "ref_src",
                        "s",
                        "t",
                        "context",
                        "share_id",
                        "list",
                    ]
                ),
                st.text(string.ascii_letters + string.digits + "%-_.", max_size=12),
            ),
            max_size=4,
        )
    )
    query = "&".join(f"{name}={value}" for name, value in tracking)
    if "?" in path:
        path = f"{path}&{query}" if query else path
    else:
        path = (path + draw(st.sampled_from(["", "/"]))) + (f"?{query}" if query else "")
    fragment = draw(st.sampled_from(["", "#", "#comments", "#t=30"]))
    padding = draw(st.sampled_from(["", " ", "\n", "\t "]))
    return f"{padding}{scheme}{host}{path}{fragment}{padding}", expected


@given(real_world_links())
def test_real_world_links_normalise_to_their_canonical_form(case: tuple[str, ParsedLink]) -> None:
    url, expected = case
    assert parse_post_url(url) == expected


@given(real_world_links())
def test_parsing_a_normalized_url_is_idempotent(case: tuple[str, ParsedLink]) -> None:
    link = parse_post_url(case[0])
    assert parse_post_url(link.normalized_url) == link


@given(real_world_links(), st.integers(min_value=0), st.characters())
def test_a_corrupted_link_parses_or_raises_invalid_post_url(case: tuple[str, ParsedLink], at: int, char: str) -> None:
    url = case[0]
    position = at % (len(url) + 1)
    _assert_parses_or_rejects_cleanly(url[:position] + char + url[position:])


@given(st.text(_CODE, min_size=11, max_size=11), st.text(_CODE, min_size=11, max_size=11))
def test_two_youtube_ids_share_a_url_only_if_equal(first: str, second: str) -> None:
    one = parse_post_url(f"https://www.youtube.com/watch?v={first}&si=share")
    two = parse_post_url(f"https://youtu.be/{second}")
    assert (one.normalized_url == two.normalized_url) == (first == second)
