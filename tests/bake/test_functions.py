"""buildx's HCL functions: every name buildx ships is callable, with the documented examples (go-cty, go-cty-funcs,
Terraform's function docs, buildx's stdlib tests) as tables, and properties where there is an invariant."""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import urllib.parse
from datetime import UTC, datetime, timedelta
from typing import Any

import bcrypt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from polyarch.errors import ParseError
from polyarch.frontend.bake.functions import FuncError
from polyarch.frontend.bake.functions_time import format_date, rfc3339
from polyarch.frontend.bake.stdlib import SPECIAL_FORMS, STDLIB
from tests.bake.test_expressions import value

# buildx's bake/hclparser/stdlib.go function table (106 names)
BUILDX_FUNCTIONS = """absolute add and base64decode base64encode basename bcrypt byteslen bytesslice can ceil chomp chunklist
cidrhost cidrnetmask cidrsubnet cidrsubnets coalesce coalescelist compact concat contains convert csvdecode dirname
distinct divide element equal flatten floor format formatdate formatlist formattimestamp greaterthan
greaterthanorequalto hasindex homedir indent index indexof int join jsondecode jsonencode keys length lessthan
lessthanorequalto log lookup lower max md5 merge min modulo multiply negate not notequal or parseint pow range
regex_replace regex regexall replace reverse reverselist rsadecrypt sanitize semvercmp sethaselement setintersection
setproduct setsubtract setsymmetricdifference setunion sha1 sha256 sha512 signum slice sort split strlen substr
subtract timeadd timestamp title trim trimprefix trimspace trimsuffix try unixtimestampparse upper urlencode uuidv4
uuidv5 values zipmap""".split()


def test_every_buildx_function_exists() -> None:
    assert len(BUILDX_FUNCTIONS) == 106
    known = set(STDLIB) | SPECIAL_FORMS | {"homedir"}
    assert sorted(set(BUILDX_FUNCTIONS) - known) == []


def test_every_buildx_function_is_callable_from_a_bake_file() -> None:
    missing = []
    for name in BUILDX_FUNCTIONS:
        try:
            value(f"{name}()")
        except ParseError as exc:
            if "unknown function" in exc.message:
                missing.append(name)
    assert missing == []


@pytest.mark.parametrize(("expr", "expected"), [
    # hashes and encodings (go-cty-funcs docs)
    ('md5("hello world")', "5eb63bbbe01eeed093cb22bb8f5acdc3"),
    ('sha1("hello world")', "2aae6c35c94fcfb415dbe95f408b9ce91ee846ed"),
    ('sha256("hello world")', "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"),
    ('sha512("hello world")', "309ecc489c12d6eb4cc40f50c902f2b4d0ed77ee511a7c7a9bcd3ca86d4cd86f"
                               "989dd35bc5ff499670da34255b45b0cfd830e81f605dcf7dc5542e93ae9cd76f"),
    ('urlencode("Hello World!")', "Hello+World%21"),
    ('urlencode("☃")', "%E2%98%83"),
    ('urlencode("foo=bar&baz-_.~")', "foo%3Dbar%26baz-_.~"),
    ('uuidv5("dns", "www.terraform.io")', "a5008fae-b28c-5ba5-96cd-82b4c53552d6"),
    ('uuidv5("url", "https://www.terraform.io/")', "9db6f67c-dd95-5ea0-aa5b-e70e5c5f7cf5"),
    ('uuidv5("oid", "1.3.6.1.4")', "af9d40a5-7a36-5c07-b23a-851cd99fbfa5"),
    ('uuidv5("x500", "CN=Example,C=GB")', "84e09961-4aa4-57f8-95b7-03edb1073253"),
    ('uuidv5("6ba7b810-9dad-11d1-80b4-00c04fd430c8", "www.terraform.io")', "a5008fae-b28c-5ba5-96cd-82b4c53552d6"),
    ("length(uuidv4())", 36),
    # networks
    ('cidrhost("10.12.112.0/20", 16)', "10.12.112.16"),
    ('cidrhost("10.12.112.0/20", 268)', "10.12.113.12"),
    ('cidrhost("10.12.112.0/20", -1)', "10.12.127.255"),
    ('cidrhost("fd00:fd12:3456:7890:00a2::/72", 34)', "fd00:fd12:3456:7890::22"),
    ('cidrnetmask("172.16.0.0/12")', "255.240.0.0"),
    ('cidrsubnet("172.16.0.0/12", 4, 2)', "172.18.0.0/16"),
    ('cidrsubnet("10.1.2.0/24", 4, 15)', "10.1.2.240/28"),
    ('cidrsubnet("fd00:fd12:3456:7890::/56", 16, 162)', "fd00:fd12:3456:7800:a200::/72"),
    ('cidrsubnets("10.1.0.0/16", 4, 4, 8, 4)', ["10.1.0.0/20", "10.1.16.0/20", "10.1.32.0/24", "10.1.48.0/20"]),
    ('cidrsubnets("fd00:fd12:3456:7890::/56", 16, 16, 16, 32)',
     ["fd00:fd12:3456:7800::/72", "fd00:fd12:3456:7800:100::/72", "fd00:fd12:3456:7800:200::/72",
      "fd00:fd12:3456:7800:300::/88"]),
    # dates
    ('formatdate("DD MMM YYYY hh:mm ZZZ", "2018-01-02T23:12:01Z")', "02 Jan 2018 23:12 UTC"),
    ('formatdate("EEEE, DD-MMM-YY hh:mm:ss ZZZ", "2018-01-02T23:12:01Z")', "Tuesday, 02-Jan-18 23:12:01 UTC"),
    ('formatdate("EEE, DD MMM YYYY hh:mm:ss ZZZ", "2018-01-02T23:12:01-08:00")', "Tue, 02 Jan 2018 23:12:01 -0800"),
    ('formatdate("MMM DD, YYYY", "2018-01-02T23:12:01Z")', "Jan 02, 2018"),
    ('formatdate("HH:mmaa", "2018-01-02T23:12:01Z")', "11:12pm"),
    ('formatdate("h\'h\'mm", "2018-01-02T23:12:01-08:00")', "23h12"),
    ('formatdate("YYYY-MM-DD\'T\'hh:mm:ssZ", "2018-01-02T03:04:05+05:30")', "2018-01-02T03:04:05+05:30"),
    ('formatdate("M/D H AA ZZZZ ZZZZZ s", "2018-01-02T00:04:05Z")', "1/2 12 AM +0000 +00:00 5"),
    ('formatdate("\'\'YY\'\'", "2018-01-02T00:04:05Z")', "'18'"),
    ('timeadd("2017-11-22T00:00:00Z", "10m")', "2017-11-22T00:10:00Z"),
    ('timeadd("2017-11-22T00:00:00Z", "-1.5h")', "2017-11-21T22:30:00Z"),
    ('timeadd("2017-11-22T00:00:00+01:00", "1h30m45s")', "2017-11-22T01:30:45+01:00"),
    ('timeadd("2017-11-22T00:00:00Z", "0")', "2017-11-22T00:00:00Z"),
    ('formattimestamp("X", "2015-10-21T00:00:00Z")', "1445385600"),
    ('formattimestamp("X", 1445385600)', "1445385600"),
    ('formattimestamp("YYYY-MM-DD", "2025-09-16T12:00:00Z")', "2025-09-16"),
    ('formattimestamp("YYYY-MM-DD\'T\'hh:mm:ssZ", 1690328596)', "2023-07-25T23:43:16Z"),
    ('formattimestamp("YYYY-MM-DD\'T\'hh:mm:ssZ", -1)', "1969-12-31T23:59:59Z"),
    ("unixtimestampparse(0).weekday_name", "Thursday"),
    ("unixtimestampparse(-1)", {"year": 1969, "year_day": 365, "day": 31, "month": 12, "month_name": "December",
                                "weekday": 3, "weekday_name": "Wednesday", "hour": 23, "minute": 59, "second": 59,
                                "rfc3339": "1969-12-31T23:59:59Z", "iso_year": 1970, "iso_week": 1}),
    ("unixtimestampparse(1690328596).iso_week", 30),
    ("length(timestamp())", 20),
    # numbers
    ("absolute(-12.4)", 12.4), ("absolute(0)", 0), ("int(5.6)", 5), ("int(-3.7)", -3),
    ("log(16, 2)", 4), ("log(1, 10)", 0), ("log(50, 10)", 1.6989700043360185),
    ("pow(3, 2)", 9), ("pow(4, 0)", 1), ("pow(2, -1)", 0.5),
    ("signum(-13)", -1), ("signum(0)", 0), ("signum(344)", 1),
    ('parseint("100", 10)', 100), ('parseint("FF", 16)', 255), ('parseint("-10", 16)', -16),
    ('parseint("1011111011101111", 2)', 48879), ('parseint("aA", 62)', 656), ('parseint("zz", 36)', 1295),
    ("greaterthanorequalto(2, 2)", True), ("lessthanorequalto(3, 2)", False),
    # collections and sets
    ('chunklist(["a", "b", "c", "d", "e"], 2)', [["a", "b"], ["c", "d"], ["e"]]),
    ('chunklist(["a", "b"], 0)', [["a", "b"]]), ("chunklist([], 3)", []),
    ('setproduct(["dev", "prod"], ["app1", "app2"])', [["dev", "app1"], ["dev", "app2"], ["prod", "app1"],
                                                      ["prod", "app2"]]),
    ('setproduct(["a"], [])', []),
    ('setintersection(["a", "b"], ["b", "c"], ["b", "d"])', ["b"]),
    ('setsubtract(["a", "b", "c"], ["a", "c"])', ["b"]),
    ('setunion(["b", "a"], ["b", "c"], ["d"])', ["a", "b", "c", "d"]),
    ("setunion([10, 9], [2])", [2, 9, 10]),
    ('setunion(["a"], [1])', ["1", "a"]),
    ("setsymmetricdifference([1, 2, 3], [1, 2, 4])", [3, 4]),
    ('sethaselement(["a", "b"], "b")', True), ('sethaselement([1], "1")', False),
    ("reverselist([1, 2, 3])", [3, 2, 1]),
    ('indexof(["one", 2, 3, "four"], "one")', 0), ('indexof(["one", 2, 3, "four"], "four")', 3),
    ("indexof([true, 1], 1)", 1),
    ('csvdecode("a,b,c\\n1,2,3\\n4,5,6")', [{"a": "1", "b": "2", "c": "3"}, {"a": "4", "b": "5", "c": "6"}]),
    ('csvdecode("name\\n\\"x, y\\"\\n")', [{"name": "x, y"}]),
    # buildx's own
    ('basename("")', "."), ('basename("/")', "/"), ('basename("/foo/bar")', "bar"), ('basename("foo/bar")', "bar"),
    ('basename("/foo/bar...")', "bar..."), ('basename("/foo/bar/")', "bar"),
    ('dirname("")', "."), ('dirname("/")', "/"), ('dirname("/foo/bar")', "/foo"), ('dirname("foo/bar")', "foo"),
    ('dirname("/foo/bar..")', "/foo"), ('dirname("foo")', "."), ('dirname("a//b/./c/../d")', "a/b"),
    ('sanitize("")', ""), ('sanitize("foo/bar.")', "foo_bar_"), ('sanitize("foo/🍕bar")', "foo__bar"),
    ('sanitize("foo/bar!@(ba+z)")', "foo_bar___ba_z_"), ('sanitize("a-b_c")', "a-b_c"),
    ('semvercmp("1.2.3", ">= 1.0.0")', True), ('semvercmp("2.1.0", "< 2.0.0")', False),
    ('semvercmp("3.22", ">= 3.20")', True), ('semvercmp("v1.4.2", "~1.4")', True), ('semvercmp("1.5.0", "~1.4")', False),
    ('semvercmp("1.9.0", "^1.2.3")', True), ('semvercmp("2.0.0", "^1.2.3")', False),
    ('semvercmp("0.2.9", "^0.2.3")', True), ('semvercmp("0.3.0", "^0.2.3")', False),
    ('semvercmp("1.2.7", "1.2.x")', True), ('semvercmp("1.3.0", "1.2.x")', False),
    ('semvercmp("1.0.0-rc1", ">= 0.9")', False), ('semvercmp("1.0.0-rc2", ">= 1.0.0-rc1")', True),
    ('semvercmp("1.5.0", "< 1.0 || >= 1.4, < 1.6")', True), ('semvercmp("1.3.0", "1.2 - 1.4.5")', True),
    ('semvercmp("1.2.3", "!= 1.2.3")', False),
    ('homedir()', "/home/user"),
    # convert and the type language
    ("convert(42, string)", "42"), ('convert("4.5", number)', 4.5), ('convert("true", bool)', True),
    ('convert(["1", "2"], list(number))', [1, 2]), ('convert(["b", "a", "b"], set(string))', ["a", "b"]),
    ('convert({ a = 1 }, map(string))', {"a": "1"}),
    ('convert({ a = 1, z = 2 }, object({ a = string, b = optional(bool, true) }))', {"a": "1", "b": True}),
    ('convert([1, "x"], tuple([string, string]))', ["1", "x"]),
])
def test_function(expr: str, expected: Any) -> None:
    assert value(expr, env={"HOME": "/home/user"}) == expected


@pytest.mark.parametrize(("expr", "message"), [
    ('indexof(["one", 2], "3")', "item not found"),
    ("indexof([], 1)", "cannot search an empty list"),
    ('indexof("ab", "a")', "must be a list or tuple"),
    ('formatdate("YYY", "2018-01-02T23:12:01Z")', "invalid date format verb"),
    ('formatdate("\'unterminated", "2018-01-02T23:12:01Z")', "unterminated literal"),
    ('formatdate("YYYY", "2018-01-02")', "not a valid RFC3339 timestamp"),
    ('formatdate("YYYY", "2018-01-02T25:00:00Z")', "not a valid RFC3339 timestamp"),
    ('timeadd("2017-11-22T00:00:00Z", "10")', "missing unit"),
    ('timeadd("2017-11-22T00:00:00Z", "10 minutes")', "invalid duration"),
    ("unixtimestampparse(1.5)", "must be an integer"),
    ('unixtimestampparse("0")', "number is required"),
    ('formattimestamp("YYYY-MM-DD", "0")', "not a valid RFC3339 timestamp"),
    ('formattimestamp("X", "0")', "not a valid RFC3339 timestamp"),
    ('parseint("12", 2)', "cannot parse"), ('parseint("1", 63)', "between 2 and 62"),
    ('semvercmp("not-a-version", ">= 1.0.0")', "invalid semantic version"),
    ('semvercmp("1.2.3", "not-a-constraint")', "improper constraint"),
    ('semvercmp("", ">= 1.0.0")', "invalid semantic version"), ('semvercmp("1.2.3", "")', "improper constraint"),
    ('cidrhost("10.0.0.0/30", 4)', "does not accommodate"),
    ('cidrnetmask("fd00::/8")', "only IPv4"),
    ('cidrsubnet("10.0.0.0/30", 4, 0)', "insufficient address space"),
    ('cidrsubnet("10.0.0.0/16", 2, 4)', "does not accommodate"),
    ('cidrsubnets("10.0.0.0/30", 1, 1, 1)', "not enough remaining address space"),
    ('cidrhost("not-a-cidr", 1)', "invalid CIDR"),
    ('uuidv5("nope", "x")', "doesn't support namespace"),
    ('csvdecode("a,b\\n1\\n")', "wrong number of fields"), ('csvdecode("")', "missing header line"),
    ('chunklist([1], -1)', "must be positive"),
    ('setproduct(["a"])', "at least 2"),
    ('byteslen("abc")', "bytes"), ('bytesslice("abc", 0, 1)', "bytes"),
    ('rsadecrypt("!!", "key")', "base64"),
    ('bcrypt("x", 3)', "cost"),
    ('convert("x", number)', "number is required"), ('convert({ z = 1 }, object({ a = string }))', "required"),
    ('convert([1], tuple([string, string]))', "2 elements"), ("convert(1, nosuchtype)", "a type is expected"),
    ('log(0, 10)', "not a finite number"),
])
def test_function_error(expr: str, message: str) -> None:
    with pytest.raises(ParseError) as exc:
        value(expr)
    assert message in exc.value.message


def test_bcrypt_hash_verifies_and_salts() -> None:
    one, two = value('bcrypt("hunter2")'), value('bcrypt("hunter2", 5)')
    assert one.startswith("$2a$10$") and two.startswith("$2a$05$") and one != value('bcrypt("hunter2")')
    assert bcrypt.checkpw(b"hunter2", one.encode()) and bcrypt.checkpw(b"hunter2", two.encode())


def test_rsadecrypt_round_trips() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption()).decode()
    cipher = base64.b64encode(key.public_key().encrypt(b"secret message", padding.PKCS1v15())).decode()
    prelude = f'KEY = <<EOT\n{pem}EOT\n'
    assert value(f'rsadecrypt("{cipher}", KEY)', prelude=prelude) == "secret message"


_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters='"\\$%'), max_size=40)


@given(_text)
@settings(max_examples=40, deadline=None)
def test_hashes_match_hashlib(s: str) -> None:
    for name in ("md5", "sha1", "sha256", "sha512"):
        assert STDLIB[name](s) == hashlib.new(name, s.encode()).hexdigest()
    assert urllib.parse.unquote_plus(STDLIB["urlencode"](s)) == s


_times = st.datetimes(min_value=datetime(1000, 1, 1), max_value=datetime(9000, 1, 1),
                      timezones=st.sampled_from([UTC])).map(lambda t: t.replace(microsecond=0))


@given(_times, st.integers(min_value=-86400 * 400, max_value=86400 * 400))
@settings(max_examples=60, deadline=None)
def test_formatdate_and_timeadd_round_trip(t: datetime, seconds: int) -> None:
    stamp = rfc3339(t)
    assert format_date("YYYY-MM-DD'T'hh:mm:ssZ", stamp) == stamp
    assert datetime.strptime(format_date("EEEE DD MMMM YYYY HH:mm:ss aa", stamp), "%A %d %B %Y %I:%M:%S %p") \
        == t.replace(tzinfo=None)
    later = STDLIB["timeadd"](stamp, f"{seconds}s")
    assert later == rfc3339(t + timedelta(seconds=seconds))
    assert STDLIB["timeadd"](later, f"{-seconds}s") == stamp
    assert STDLIB["formattimestamp"]("X", stamp) == str(int(t.timestamp()))


_strs = st.lists(st.sampled_from("abcdef"), max_size=6)


@given(_strs, _strs)
@settings(max_examples=60, deadline=None)
def test_set_functions_agree_with_python_sets(a: list[str], b: list[str]) -> None:
    assert STDLIB["setunion"](a, b) == sorted(set(a) | set(b))
    assert STDLIB["setintersection"](a, b) == sorted(set(a) & set(b))
    assert STDLIB["setsubtract"](a, b) == sorted(set(a) - set(b))
    assert STDLIB["setsymmetricdifference"](a, b) == sorted(set(a) ^ set(b))
    assert len(STDLIB["setproduct"](a, b)) == len(a) * len(b)
    for size in range(0, 4):
        chunks = STDLIB["chunklist"](a, size)
        assert [x for c in chunks for x in c] == a


@given(st.integers(min_value=-(10**12), max_value=10**12), st.integers(min_value=2, max_value=36))
@settings(max_examples=60, deadline=None)
def test_parseint_inverts_formatting(n: int, base: int) -> None:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    k, out = abs(n), ""
    while True:
        k, r = divmod(k, base)
        out = digits[r] + out
        if not k:
            break
    text = ("-" if n < 0 else "") + out
    assert STDLIB["parseint"](text, base) == n == int(text, base)


@given(st.integers(min_value=8, max_value=24), st.lists(st.integers(min_value=1, max_value=6), max_size=6))
@settings(max_examples=60, deadline=None)
def test_cidrsubnets_are_disjoint_aligned_and_inside(prefix: int, bits: list[int]) -> None:
    base = f"10.0.0.0/{prefix}"
    try:
        subnets = [ipaddress.ip_network(s) for s in STDLIB["cidrsubnets"](base, *bits)]
    except FuncError as exc:  # only "out of space" may fail
        assert "address space" in str(exc) or "too long" in str(exc)
        return
    parent = ipaddress.ip_network(base)
    assert [s.prefixlen for s in subnets] == [prefix + b for b in bits]
    assert all(s.subnet_of(parent) for s in subnets)
    assert all(not x.overlaps(y) for i, x in enumerate(subnets) for y in subnets[i + 1:])
