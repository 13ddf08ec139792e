"""The SigV4 verifier, with botocore as the oracle: what it signs must authenticate, and any
change to a signed part must not."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from datetime import timedelta
from urllib.parse import parse_qs, quote

import pytest

from andromede.auth import sigv4
from andromede.auth.sigv4 import PayloadMode, SignedRequest
from andromede.core import errors
from support.botocore_signing import (
    ACCESS_KEY,
    NOW,
    SECRET,
    check,
    header,
    presigned,
    signed,
    with_header,
    without_header,
)

# --- accepted ---------------------------------------------------------------------------------
KEYS = [
    "key",
    "dir/sub dir/file.txt",
    "plus+and space",
    "tilde~dash-under_dot.",
    "percent%20literal",
    "unicode/héllo/ключ/日本語",
    "reserved!*'();:@&=+$,?#[]",
    "a//double//slash",
    "./dot/../segments",
    "trailing/",
]


@pytest.mark.parametrize("crt", [False, True], ids=["python", "crt"])
@pytest.mark.parametrize("key", KEYS)
async def test_botocore_signed_keys_authenticate(key: str, crt: bool) -> None:
    req = signed("PUT", "/bucket/" + quote(key, safe="/~"), body=b"data", crt=crt)
    ctx = await check(req)
    assert ctx.access_key_id == ACCESS_KEY
    assert ctx.payload_mode is PayloadMode.SIGNED
    assert ctx.payload_sha256 == header(req, "x-amz-content-sha256")


@pytest.mark.parametrize(
    "query",
    [
        "acl",
        "uploads",
        "list-type=2&prefix=a%2Fb&delimiter=%2F",
        "versionId=null&partNumber=3",
        "prefix=%E6%97%A5%20x&max-keys=5",
        "tagging=&x-id=PutObjectTagging",
        "b=2&a=1&a=0",
    ],
)
@pytest.mark.parametrize("crt", [False, True], ids=["python", "crt"])
async def test_botocore_signed_queries_authenticate(query: str, crt: bool) -> None:
    by_header = signed("GET", "/bucket", query, crt=crt)
    ctx = await check(by_header)
    assert ctx.access_key_id == ACCESS_KEY
    assert not ctx.presigned
    assert header(by_header, "authorization").endswith("Signature=" + ctx.seed_signature)

    by_query = presigned("GET", "/bucket", query, crt=crt)
    ctx = await check(by_query)
    assert ctx.access_key_id == ACCESS_KEY
    assert ctx.presigned
    assert ctx.region == "eu-west-3"
    assert ctx.signed_headers == ("host",)
    assert ctx.payload_mode is PayloadMode.UNSIGNED
    assert ctx.seed_signature == parse_qs(by_query.query_string)["X-Amz-Signature"][0]


async def test_context_describes_the_signature() -> None:
    req = signed("PUT", "/b/k", headers={"x-amz-meta-color": "  blue   green "}, region="fr-par")
    ctx = await check(req)
    assert ctx.scope == f"{NOW:%Y%m%d}/fr-par/s3/aws4_request"
    assert ctx.region == "fr-par"
    assert ctx.service == "s3"
    assert ctx.amz_date == f"{NOW:%Y%m%dT%H%M%SZ}"
    assert ctx.seed_signature in header(req, "authorization")
    assert ctx.signing_key == sigv4.signing_key(SECRET, f"{NOW:%Y%m%d}", "fr-par", "s3")
    assert "x-amz-meta-color" in ctx.signed_headers
    assert not ctx.presigned
    assert "signing_key" not in repr(ctx)


async def test_date_header_instead_of_x_amz_date() -> None:
    req = signed(headers={"Date": "Sat, 14 Mar 2026 15:09:26 GMT"})
    assert not any(name == "x-amz-date" for name, _ in req.headers)
    ctx = await check(req)
    assert ctx.amz_date == "20260314T150926Z"


@pytest.mark.parametrize(
    ("value", "mode"),
    [
        ("UNSIGNED-PAYLOAD", PayloadMode.UNSIGNED),
        ("STREAMING-AWS4-HMAC-SHA256-PAYLOAD", PayloadMode.STREAMING_SIGNED),
        ("STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER", PayloadMode.STREAMING_SIGNED_TRAILER),
        ("STREAMING-UNSIGNED-PAYLOAD-TRAILER", PayloadMode.STREAMING_UNSIGNED_TRAILER),
    ],
)
async def test_payload_modes(value: str, mode: PayloadMode) -> None:
    ctx = await check(signed("PUT", payload=value))
    assert ctx.payload_mode is mode
    assert ctx.payload_sha256 is None
    assert mode.is_streaming == value.startswith("STREAMING")


async def test_uppercase_hex_payload_hash_is_normalised() -> None:
    digest = "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"
    ctx = await check(signed("PUT", payload=digest))
    assert ctx.payload_sha256 == digest.lower()


async def test_clock_skew_within_limit_is_accepted() -> None:
    req = signed()
    for server_now in (NOW + timedelta(minutes=14), NOW - timedelta(minutes=14)):
        ctx = await check(req, server_now)
        assert ctx.access_key_id == ACCESS_KEY
        # The signature binds the client's time, not the server's.
        assert ctx.amz_date == f"{NOW:%Y%m%dT%H%M%SZ}"
        assert ctx.scope == f"{NOW:%Y%m%d}/us-east-1/s3/aws4_request"


async def test_naive_now_is_taken_as_utc() -> None:
    ctx = await check(signed(), NOW.replace(tzinfo=None))
    assert ctx.access_key_id == ACCESS_KEY
    assert ctx.amz_date == f"{NOW:%Y%m%dT%H%M%SZ}"
    # Compared as UTC: 16 naive minutes later is as skewed as 16 UTC minutes.
    with pytest.raises(errors.RequestTimeTooSkewed):
        await check(signed(), (NOW + timedelta(minutes=16)).replace(tzinfo=None))


async def test_client_that_signs_its_unusual_encoding_verbatim() -> None:
    # A hand-rolled client sends '+' and '=' raw and signs exactly what it sent.
    date = f"{NOW:%Y%m%d}"
    headers = [
        ("host", "s3.local"),
        ("x-amz-date", f"{NOW:%Y%m%dT%H%M%SZ}"),
        ("x-amz-content-sha256", "UNSIGNED-PAYLOAD"),
    ]
    canonical = "\n".join(
        [
            "GET",
            "/bucket/a+b=c",
            "prefix=x+y",
            sigv4.canonical_headers(headers, ["host", "x-amz-content-sha256", "x-amz-date"]),
            "host;x-amz-content-sha256;x-amz-date",
            "UNSIGNED-PAYLOAD",
        ]
    )
    scope = f"{date}/us-east-1/s3/aws4_request"
    key = sigv4.signing_key(SECRET, date, "us-east-1", "s3")
    signature = sigv4.compute_signature(key, sigv4.string_to_sign(headers[1][1], scope, canonical))
    authorization = (
        f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/{scope},"
        f"SignedHeaders=host;x-amz-content-sha256;x-amz-date,Signature={signature}"
    )
    req = SignedRequest(
        "GET", "/bucket/a+b=c", "prefix=x+y", [*headers, ("authorization", authorization)]
    )
    ctx = await check(req)
    assert ctx.access_key_id == ACCESS_KEY
    assert ctx.seed_signature == signature
    assert ctx.signed_headers == ("host", "x-amz-content-sha256", "x-amz-date")
    assert ctx.payload_mode is PayloadMode.UNSIGNED


# --- refused --------------------------------------------------------------------------------
def _tamper_path(r: SignedRequest) -> SignedRequest:
    return dataclasses.replace(r, raw_path=r.raw_path + "x")


def _tamper_query(r: SignedRequest) -> SignedRequest:
    return dataclasses.replace(
        r, query_string=(r.query_string + "&" if r.query_string else "") + "a=1"
    )


def _tamper_method(r: SignedRequest) -> SignedRequest:
    return dataclasses.replace(r, method="POST" if r.method != "POST" else "PUT")


def _tamper_host(r: SignedRequest) -> SignedRequest:
    return with_header(r, "host", "evil.example")


TAMPERS = {
    "path": _tamper_path,
    "query": _tamper_query,
    "method": _tamper_method,
    "host": _tamper_host,
}


@pytest.mark.parametrize("part", sorted(TAMPERS))
async def test_tampered_header_signed_request(part: str) -> None:
    with pytest.raises(errors.SignatureDoesNotMatch):
        await check(TAMPERS[part](signed("GET", "/bucket/key", "versionId=1")))


@pytest.mark.parametrize("part", sorted(TAMPERS))
async def test_tampered_presigned_request(part: str) -> None:
    with pytest.raises(errors.SignatureDoesNotMatch):
        await check(TAMPERS[part](presigned("GET", "/bucket/key", "versionId=1")))


async def test_tampered_signed_header_value() -> None:
    req = signed("PUT", headers={"x-amz-meta-owner": "alice"})
    with pytest.raises(errors.SignatureDoesNotMatch):
        await check(with_header(req, "x-amz-meta-owner", "mallory"))


async def test_tampered_payload_hash() -> None:
    req = signed("PUT", body=b"data")
    with pytest.raises(errors.SignatureDoesNotMatch):
        await check(with_header(req, "x-amz-content-sha256", "0" * 64))


async def test_differently_encoded_slash_is_a_different_key() -> None:
    req = signed("GET", "/bucket/a%2Fb")
    with pytest.raises(errors.SignatureDoesNotMatch):
        await check(dataclasses.replace(req, raw_path="/bucket/a/b"))


@pytest.mark.parametrize("crt", [False, True], ids=["python", "crt"])
async def test_random_requests_round_trip_and_break_when_tampered(crt: bool) -> None:
    rng = random.Random(20260314)
    alphabet = "abcXYZ019 -_.~!*'()+=&?#%/:;,@$[]éß日\u00a0"
    for _ in range(60):
        key = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 24)))
        params = {
            "".join(rng.choice("abcdef-_.~") for _ in range(rng.randint(1, 6))): "".join(
                rng.choice(alphabet) for _ in range(rng.randint(0, 8))
            )
            for _ in range(rng.randint(0, 3))
        }
        query = "&".join(
            f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in params.items()
        )
        meta = "".join(rng.choice("ab  \tc") for _ in range(rng.randint(1, 10))).strip() or "x"
        use_presign = rng.random() < 0.5
        if use_presign:
            req = presigned("GET", "/bucket/" + quote(key, safe="/~"), query, crt=crt)
        else:
            req = signed(
                rng.choice(["GET", "PUT", "DELETE", "HEAD"]),
                "/bucket/" + quote(key, safe="/~"),
                query,
                headers={"x-amz-meta-m": meta},
                body=bytes(rng.randrange(256) for _ in range(rng.randint(0, 40))),
                crt=crt,
            )
        await check(req)
        tamper = TAMPERS[rng.choice(sorted(TAMPERS))]
        with pytest.raises(errors.SignatureDoesNotMatch):
            await check(tamper(req))


async def test_unknown_access_key() -> None:
    with pytest.raises(errors.InvalidAccessKeyId):
        await check(signed(access_key="AKIDNOBODY"))


async def test_wrong_secret() -> None:
    with pytest.raises(errors.SignatureDoesNotMatch):
        await check(signed(secret="not-the-secret"))


@pytest.mark.parametrize("offset", [timedelta(minutes=16), -timedelta(minutes=16)])
async def test_clock_skew(offset: timedelta) -> None:
    with pytest.raises(errors.RequestTimeTooSkewed):
        await check(signed(), NOW + offset)


async def test_no_authentication_is_anonymous() -> None:
    req = SignedRequest("GET", "/bucket/key", "", [("host", "s3.local")])
    with pytest.raises(errors.AnonymousAccessDenied):
        await check(req)
    # An empty Authorization header authenticates nobody either (403 AccessDenied, as S3).
    with pytest.raises(errors.AnonymousAccessDenied):
        await check(with_header(req, "authorization", " "))


@pytest.mark.parametrize("when", ["20100707T215304Z", "20300707T215304Z", "99990707T215304Z"])
async def test_a_request_time_far_off_is_skewed_before_its_scope_is_checked(when: str) -> None:
    """A signature whose x-amz-date was changed to another day: S3 says the clock is off
    (s3-tests' bad_amz_date_before_today / after_end), not that the scope is malformed."""
    with pytest.raises(errors.RequestTimeTooSkewed):
        await check(with_header(signed(), "x-amz-date", when))


async def test_sigv2_header_is_refused() -> None:
    req = SignedRequest(
        "GET", "/b/k", "", [("host", "h"), ("authorization", "AWS AKID:c2lnbmF0dXJl")]
    )
    with pytest.raises(errors.InvalidRequest, match="AWS4-HMAC-SHA256"):
        await check(req)


async def test_sigv2_query_is_refused() -> None:
    req = SignedRequest("GET", "/b/k", "AWSAccessKeyId=AK&Expires=1&Signature=abc", [("host", "h")])
    with pytest.raises(errors.InvalidRequest, match="AWS4-HMAC-SHA256"):
        await check(req)


async def test_unknown_scheme_is_refused() -> None:
    req = with_header(signed(), "authorization", "Bearer abc")
    with pytest.raises(errors.InvalidArgument):
        await check(req)


async def test_header_and_query_auth_together_are_refused() -> None:
    req = presigned()
    both = with_header(req, "authorization", header(signed(), "authorization"))
    with pytest.raises(errors.InvalidArgument):
        await check(both)


def _authz(req: SignedRequest, transform: Callable[[str], str]) -> SignedRequest:
    return with_header(req, "authorization", transform(header(req, "authorization")))


@pytest.mark.parametrize(
    "transform",
    [
        lambda a: a.replace(", Signature=", ", Sig="),
        lambda a: a.split(", Signature=")[0],
        lambda a: a + ", Signature=" + "0" * 64,
        lambda a: a.replace("/aws4_request", "/aws5_request"),
        lambda a: a.replace("/us-east-1/s3", "/s3"),
        lambda a: a.replace(
            "Credential=" + ACCESS_KEY + "/2026", "Credential=" + ACCESS_KEY + "/2025"
        ),
        lambda a: a.replace("SignedHeaders=host;", "SignedHeaders="),
        lambda a: a.replace("SignedHeaders=host;", "SignedHeaders=Host;"),
        lambda a: a.replace(", ", ",, "),
    ],
)
async def test_malformed_authorization_header(transform: Callable[[str], str]) -> None:
    with pytest.raises(errors.AuthorizationHeaderMalformed):
        await check(_authz(signed(), transform))


@pytest.mark.parametrize(
    "transform",
    [lambda a: a[:-64] + "g" * 64, lambda a: a[:-1], lambda a: a[:-64] + "FWeDfwojDSdS2Ztm=é"],
)
async def test_a_signature_of_another_shape_does_not_match(
    transform: Callable[[str], str],
) -> None:
    """S3 does not check a signature's spelling apart: it is one that does not match."""
    with pytest.raises(errors.SignatureDoesNotMatch):
        await check(_authz(signed(), transform))


async def test_who_signed_is_checked_before_the_scope_date() -> None:
    """s3-tests' bad_authorization_incorrect: an unknown key with a scope of another day is
    403 InvalidAccessKeyId, as on S3, not a malformed header."""
    other = _authz(signed(), lambda a: a.replace(ACCESS_KEY + "/2026", "AKIAUNKNOWN/2015"))
    with pytest.raises(errors.InvalidAccessKeyId):
        await check(other)


async def test_authorization_header_without_spaces_after_commas() -> None:
    req = signed()
    ctx = await check(_authz(req, lambda a: a.replace(", ", ",")))
    assert ctx.access_key_id == ACCESS_KEY
    assert ctx.signed_headers == ("host", "x-amz-content-sha256", "x-amz-date")
    assert header(req, "authorization").endswith("Signature=" + ctx.seed_signature)


async def test_two_authorization_headers() -> None:
    req = signed()
    twice = dataclasses.replace(
        req, headers=[*req.headers, ("authorization", header(req, "authorization"))]
    )
    with pytest.raises(errors.AuthorizationHeaderMalformed):
        await check(twice)


async def test_missing_date() -> None:
    with pytest.raises(errors.AccessDenied):
        await check(without_header(signed(), "x-amz-date"))


async def test_malformed_x_amz_date() -> None:
    with pytest.raises(errors.AccessDenied):
        await check(with_header(signed(), "x-amz-date", "2026-03-14T15:09:26Z"))


async def test_missing_payload_hash_header() -> None:
    with pytest.raises(errors.InvalidRequest, match="x-amz-content-sha256"):
        await check(without_header(signed(), "x-amz-content-sha256"))


@pytest.mark.parametrize(
    "value", ["SIGNED", "abc", "0" * 63, "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD"]
)
async def test_invalid_payload_hash_header(value: str) -> None:
    with pytest.raises(errors.InvalidContentSHA256):
        await check(signed("PUT", payload=value))


async def test_unsigned_amz_header_is_refused() -> None:
    req = with_header(signed(), "x-amz-acl", "public-read")
    with pytest.raises(errors.AccessDenied) as caught:
        await check(req)
    assert caught.value.details["HeadersNotSigned"] == "x-amz-acl"


async def test_unsigned_amz_header_is_refused_on_presigned() -> None:
    with pytest.raises(errors.AccessDenied):
        await check(with_header(presigned(), "x-amz-meta-late", "1"))


async def test_other_unsigned_headers_are_fine() -> None:
    ctx = await check(with_header(signed(), "user-agent", "curl/8"))
    assert ctx.access_key_id == ACCESS_KEY
    assert "user-agent" not in ctx.signed_headers
    assert ctx.signed_headers == ("host", "x-amz-content-sha256", "x-amz-date")


async def test_signed_header_missing_from_request() -> None:
    req = signed(headers={"x-amz-meta-a": "1"})
    with pytest.raises(errors.SignatureDoesNotMatch, match="x-amz-meta-a"):
        await check(without_header(req, "x-amz-meta-a"))


# --- helpers ----------------------------------------------------------------------------------
def test_canonical_uri_encodes_the_s3_way() -> None:
    assert sigv4.canonical_uri("/b/a b+c~d%7E") == "/b/a%20b%2Bc~d~"
    assert sigv4.canonical_uri("/b/%c3%a9") == "/b/%C3%A9"
    assert sigv4.canonical_uri("/b/./x/../y//") == "/b/./x/../y//"
    assert sigv4.canonical_uri("") == "/"


def test_canonical_query_sorts_and_reencodes() -> None:
    assert sigv4.canonical_query("b=2&a=%7e&a=1&acl") == "a=1&a=~&acl=&b=2"
    assert sigv4.canonical_query("x=a b&y=+") == "x=a%20b&y=%2B"
    assert sigv4.canonical_query("X-Amz-Signature=abc&a=1", exclude_signature=True) == "a=1"
    assert sigv4.canonical_query("") == ""


@pytest.mark.parametrize("crt", [False, True], ids=["python", "crt"])
async def test_non_ascii_header_values_authenticate(crt: bool) -> None:
    """botocore signs a header's text and writes it as UTF-8; Python's http.client writes
    latin-1 text as latin-1. Either way the text signed is the text received."""
    req = signed("PUT", "/bucket/k", headers={"x-amz-meta-city": "Zürich 東京"}, crt=crt)
    assert header(req, "x-amz-meta-city") == "Zürich 東京".encode().decode("latin-1")
    assert (await check(req)).access_key_id == ACCESS_KEY
    latin = signed("PUT", "/bucket/k", headers={"x-amz-meta-city": "Zürich"}, crt=crt)
    as_latin1 = with_header(latin, "x-amz-meta-city", "Zürich")  # the byte 0xFC on the wire
    assert (await check(as_latin1)).access_key_id == ACCESS_KEY
    with pytest.raises(errors.SignatureDoesNotMatch):
        await check(with_header(req, "x-amz-meta-city", "Zurich 東京"))


def test_canonical_headers_trim_and_join() -> None:
    headers = [("host", "h"), ("x-a", "  one   two  "), ("x-a", "\tthree"), ("x-b", "\u00a0keep")]
    assert sigv4.canonical_headers(headers, ["host", "x-a", "x-b"]) == (
        "host:h\nx-a:one two,three\nx-b:\u00a0keep\n"
    )
    with pytest.raises(KeyError):
        sigv4.canonical_headers(headers, ["x-c"])
