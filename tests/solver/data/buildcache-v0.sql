-- Made by polyarch at commit 50548e4 (before PRAGMA user_version migrations) through its own API, dumped with
-- sqlite3's iterdump. Loaded by the migration tests: a database of that version must open and keep its rows.
BEGIN TRANSACTION;
CREATE TABLE filehash (path TEXT PRIMARY KEY, sig TEXT NOT NULL, digest TEXT NOT NULL);
INSERT INTO "filehash" VALUES(X'2F6374782F66696C652E747874','10:1700000000.0:42','sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc');
INSERT INTO "filehash" VALUES(X'2F6374782F636166E9','3:1700000001.0:43','sha256:dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd');
CREATE TABLE layerindex (digest TEXT PRIMARY KEY, data BLOB NOT NULL);
INSERT INTO "layerindex" VALUES('sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa',X'0001696E6465782D6279746573FF');
CREATE TABLE results (key TEXT PRIMARY KEY, layer TEXT NOT NULL, created REAL NOT NULL);
INSERT INTO "results" VALUES('key-with-layer','{"descriptor": {"digest": "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "size": 123}, "diff_id": "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", "size": 456}',1.7965555965522303581e+09);
INSERT INTO "results" VALUES('key-no-layer','none',1.7965555965524885654e+09);
CREATE TABLE snapshots (chain TEXT PRIMARY KEY, parent TEXT NOT NULL, diff_id TEXT NOT NULL,
                                      used REAL NOT NULL);
INSERT INTO "snapshots" VALUES('eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee','','sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb',1.79655559655344891547e+09);
INSERT INTO "snapshots" VALUES('ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff','eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee','sha256:9999999999999999999999999999999999999999999999999999999999999999',1.79655559655344891547e+09);
COMMIT;
