"""What the OCI distribution-spec conformance suite (1.1, every workflow and data set but ``sparse``) checks and
polyarch once got wrong, asserted over HTTP against a real ``polyarch registry serve``:

- the referrers API lists an image manifest without ``artifactType`` with its config's media type (and filters on
  it), also for rows a registry.db stored before that rule (schema migration 2);
- a manifest PUT by digest creates every ``?tag=`` tag in one go and names each in an ``OCI-Tag`` header; a tag
  then resolves to that digest, sha512 included;
- a blob DELETE answers 202, 404 or 405 (never 409): it removes the repository's link only, so the bytes stay
  for every other repository and manifest that needs them.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from tests.registry.imagegen import make_test_image

from polyarch.content.store import ContentStore
from polyarch.registry.server import collect_garbage
from polyarch.registry.server.names import MAX_TAG_PARAMS

from .conftest import OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST, Api, Server, sha256, sha512
from .test_metadata_migration import M2, load_dump


@contextmanager
def client(server: Server) -> Iterator[Api]:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield Api(c)


def subject_of(api: Api, repo: str) -> dict[str, Any]:
    raw, d = api.push_image(repo, "subject")
    return {"mediaType": OCI_MANIFEST, "digest": d, "size": len(raw)}


def referrers(api: Api, repo: str, digest: str, artifact_type: str = "") -> dict[str, str | None]:
    r = api.c.get(f"/v2/{repo}/referrers/{digest}", params={"artifactType": artifact_type} if artifact_type else None)
    assert r.status_code == 200 and r.headers["content-type"] == OCI_INDEX, r.text
    return {m["digest"]: m.get("artifactType") for m in r.json()["manifests"]}


# --- referrers: artifactType -----------------------------------------------------------------------------------

def test_referrers_artifact_type_falls_back_to_the_config_media_type(live: Callable[..., Server]) -> None:
    with client(live()) as api:
        subject = subject_of(api, "app")
        plain = api.manifest("app", [b"sig"], subject=subject)  # an image manifest, OCI config, no artifactType
        d_plain = sha256(plain)
        assert api.put_manifest("app", d_plain, plain).headers["oci-subject"] == subject["digest"]
        explicit = api.manifest("app", [b"sbom"], subject=subject, artifact_type="application/vnd.example.sbom")
        d_explicit = sha256(explicit)
        api.put_manifest("app", d_explicit, explicit)
        cfg = b"{}"
        custom = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "subject": subject,
                             "config": {"mediaType": "application/vnd.example.config", "size": len(cfg),
                                        "digest": api.push_blob("app", cfg)},
                             "layers": []}).encode()
        d_custom = sha256(custom)
        api.put_manifest("app", d_custom, custom)
        index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "subject": subject,
                            "manifests": [{"mediaType": OCI_MANIFEST, "digest": d_plain, "size": len(plain)}]})
        d_index = sha256(index.encode())
        assert api.put_manifest("app", d_index, index.encode(), OCI_INDEX).status_code == 201

        assert referrers(api, "app", subject["digest"]) == {
            d_plain: OCI_CONFIG, d_explicit: "application/vnd.example.sbom",
            d_custom: "application/vnd.example.config", d_index: None}  # an index has no config to fall back on
        assert referrers(api, "app", subject["digest"], OCI_CONFIG) == {d_plain: OCI_CONFIG}
        assert referrers(api, "app", subject["digest"], "application/vnd.example.config") == {
            d_custom: "application/vnd.example.config"}


def test_rows_stored_before_the_rule_get_the_config_type_when_served(tmp_path: Path,
                                                                     live: Callable[..., Server]) -> None:
    """A registry.db of schema version 0/1 whose referrer row has an empty artifact type is migrated on start."""
    root = tmp_path / "store"
    path = load_dump(root)
    referrer = "sha256:" + "5" * 64
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO manifests VALUES (?,?,?,?,?,?,?,?)",
                   ("library/alpine", referrer, OCI_MANIFEST, 321, "", M2, "{}", time.time()))
    with client(live(root)) as api:
        assert referrers(api, "library/alpine", M2) == {referrer: OCI_CONFIG, "sha256:" + "4" * 64:
                                                        "application/vnd.example.sig"}
        assert referrers(api, "library/alpine", M2, OCI_CONFIG) == {referrer: OCI_CONFIG}


# --- ?tag= on a PUT by digest ----------------------------------------------------------------------------------

def oci_tags(r: httpx.Response) -> list[str]:
    return [t.strip() for v in r.headers.get_list("oci-tag") for t in v.split(",")]


def test_put_by_digest_creates_each_tag_parameter(live: Callable[..., Server]) -> None:
    with client(live()) as api:
        raw = api.manifest("app", [os.urandom(100)])
        d = sha256(raw)
        r = api.c.put(f"/v2/app/manifests/{d}?tag=1.2.3&tag=1.2&tag=latest&tag=1.2", content=raw,
                      headers={"Content-Type": OCI_MANIFEST})
        assert r.status_code == 201 and r.headers["docker-content-digest"] == d
        assert oci_tags(r) == ["1.2.3", "1.2", "latest"]  # a repeated tag is created once
        for tag in ("1.2.3", "1.2", "latest"):
            got = api.c.get(f"/v2/app/manifests/{tag}")
            assert got.status_code == 200 and got.content == raw and got.headers["docker-content-digest"] == d
        assert api.c.get("/v2/app/tags/list").json()["tags"] == ["1.2", "1.2.3", "latest"]
        # a tag parameter moves an existing tag to the new digest
        raw2 = api.manifest("app", [os.urandom(100)])
        d2 = sha256(raw2)
        r = api.c.put(f"/v2/app/manifests/{d2}?tag=latest", content=raw2, headers={"Content-Type": OCI_MANIFEST})
        assert r.status_code == 201 and oci_tags(r) == ["latest"]
        assert api.c.head("/v2/app/manifests/latest").headers["docker-content-digest"] == d2
        assert api.c.head("/v2/app/manifests/1.2").headers["docker-content-digest"] == d
        # without parameters: no tag, no header
        raw3 = api.manifest("app", [os.urandom(100)])
        r = api.c.put(f"/v2/app/manifests/{sha256(raw3)}", content=raw3, headers={"Content-Type": OCI_MANIFEST})
        assert r.status_code == 201 and "oci-tag" not in r.headers
        assert api.c.get("/v2/app/tags/list").json()["tags"] == ["1.2", "1.2.3", "latest"]


def test_tag_parameters_keep_a_sha512_digest(live: Callable[..., Server]) -> None:
    """The suite's "Tag Param sha512": the tags resolve to the sha512 digest the manifest was pushed by."""
    with client(live(None, "--delete-enabled")) as api:
        def push512(data: bytes) -> str:
            d = sha512(data)
            r = api.c.post(f"/v2/app/blobs/uploads/?digest={d}", content=data)
            assert r.status_code == 201, r.text
            return d

        cfg, layer = api.config(), os.urandom(300)
        raw = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                          "config": {"mediaType": OCI_CONFIG, "digest": push512(cfg), "size": len(cfg)},
                          "layers": [{"mediaType": OCI_LAYER, "digest": push512(layer), "size": len(layer)}]}
                         ).encode()
        d = sha512(raw)
        r = api.c.put(f"/v2/app/manifests/{d}?tag=t512&tag=also", content=raw, headers={"Content-Type": OCI_MANIFEST})
        assert r.status_code == 201 and r.headers["docker-content-digest"] == d and oci_tags(r) == ["t512", "also"]
        for tag in ("t512", "also"):
            got = api.c.get(f"/v2/app/manifests/{tag}")
            assert got.headers["docker-content-digest"] == d and got.content == raw
        # deleting the manifest by its sha512 digest takes its tags with it
        assert api.c.delete(f"/v2/app/manifests/{d}").status_code == 202
        assert api.c.head("/v2/app/manifests/t512").status_code == 404


def test_bad_tag_parameters_store_nothing(live: Callable[..., Server]) -> None:
    with client(live()) as api:
        raw = api.manifest("app", [os.urandom(100)])
        d = sha256(raw)
        for query, status in (("tag=good&tag=-bad", 400), ("tag=" + "x" * 129, 400), ("tag=", 400),
                              ("&".join(f"tag=t{i}" for i in range(MAX_TAG_PARAMS + 1)), 414)):
            r = api.c.put(f"/v2/app/manifests/{d}?{query}", content=raw, headers={"Content-Type": OCI_MANIFEST})
            assert r.status_code == status and r.json()["errors"][0]["code"] == "TAG_INVALID", query
        assert api.c.head(f"/v2/app/manifests/{d}").status_code == 404
        assert api.c.head("/v2/app/manifests/good").status_code == 404
        # exactly the limit is accepted
        query = "&".join(f"tag=t{i}" for i in range(MAX_TAG_PARAMS))
        r = api.c.put(f"/v2/app/manifests/{d}?{query}", content=raw, headers={"Content-Type": OCI_MANIFEST})
        assert r.status_code == 201 and len(oci_tags(r)) == MAX_TAG_PARAMS


# --- blob DELETE: 202 / 404 / 405 ------------------------------------------------------------------------------

def test_blob_delete_answers_202_404_405_never_409(tmp_path: Path, live: Callable[..., Server]) -> None:
    server = live(None, "--delete-enabled")
    with client(server) as api:
        orphan = api.push_blob("app", os.urandom(100))
        r = api.c.delete(f"/v2/app/blobs/{orphan}")
        assert r.status_code == 202 and r.headers["docker-content-digest"] == orphan
        assert api.c.head(f"/v2/app/blobs/{orphan}").status_code == 404  # at once ("Blob delete atomic")
        r = api.c.delete(f"/v2/app/blobs/{orphan}")
        assert r.status_code == 404 and r.json()["errors"][0]["code"] == "BLOB_UNKNOWN"

        # still referenced by a manifest of the repository: the link goes, the bytes stay
        raw, d = api.push_image("app", "1", [b"shared layer bytes"])
        layer = json.loads(raw)["layers"][0]["digest"]
        r = api.c.post(f"/v2/other/blobs/uploads/?mount={layer}&from=app")
        assert r.status_code == 201
        r = api.c.delete(f"/v2/app/blobs/{layer}")
        assert r.status_code == 202
        assert api.c.head(f"/v2/app/blobs/{layer}").status_code == 404
        assert api.c.get(f"/v2/app/manifests/{d}").status_code == 200  # the manifest is not touched
        assert api.c.get(f"/v2/other/blobs/{layer}").content == b"shared layer bytes"  # nor another repository
        report = collect_garbage(ContentStore(server.root), grace=0, now=time.time() + 86400)
        assert layer not in report.deleted and orphan in report.deleted
        # a re-push links it again, without sending the bytes (a mount)
        r = api.c.post(f"/v2/app/blobs/uploads/?mount={layer}&from=other")
        assert r.status_code == 201 and api.c.get(f"/v2/app/blobs/{layer}").content == b"shared layer bytes"

    with client(live()) as api:  # deletes off: 405
        blob = api.push_blob("app", b"kept")
        r = api.c.delete(f"/v2/app/blobs/{blob}")
        assert r.status_code == 405 and r.json()["errors"][0]["code"] == "UNSUPPORTED"
        assert api.c.head(f"/v2/app/blobs/{blob}").status_code == 200


def test_blob_of_a_local_store_name_is_405_and_stays(tmp_path: Path, live: Callable[..., Server]) -> None:
    root = tmp_path / "store"
    make_test_image(root, "gen/app:1", platforms=("linux/amd64",), layer_sizes=(500,))
    with client(live(root, "--delete-enabled")) as api:
        top = api.c.get("/v2/gen/app/manifests/1").json()
        layer = top["layers"][0]["digest"]
        r = api.c.delete(f"/v2/gen/app/blobs/{layer}")
        assert r.status_code == 405 and r.json()["errors"][0]["code"] == "UNSUPPORTED"
        assert "polyarch rm" in r.json()["errors"][0]["message"]
        assert api.c.head(f"/v2/gen/app/blobs/{layer}").status_code == 200
