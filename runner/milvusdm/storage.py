"""Object storage: ``s3://bucket/key`` paths for sources and exports, through boto3.

HDF5 files are streamed, not downloaded: ``RangeReader`` is a seekable file for h5py backed
by ranged GETs of ``block_size_mb`` (a GET costs ~100 ms on real object stores, so blocks are
large) and a small cache of blocks. Memory: ``CACHED_BLOCKS`` blocks, whatever the file size.
boto3 is imported when a store is made: a run without s3:// paths does not pay its ~8 MB.
"""

from __future__ import annotations

import fnmatch
import glob
import hashlib
import io
import logging
import tempfile
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from typing_extensions import Buffer

from milvusdm.errors import InputError, TransientError
from milvusdm.spec import S3Settings

if TYPE_CHECKING:
    from botocore.exceptions import ClientError

log = logging.getLogger(__name__)
SCHEME = "s3://"
CACHED_BLOCKS = 2  # one per dataset read in step (vectors and ids), no more: memory is the cache
READ_BYTES = 1 << 20  # the HTTP body is copied into the block this much at a time
PART_BYTES, UPLOAD_THREADS = 64 << 20, 4  # multipart uploads: parts, and parts in flight
DENIED = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403", "InvalidToken", "ExpiredToken"}
MISSING = {"NoSuchKey", "404", "NotFound"}
DELETE_BATCH = 1000  # keys per DeleteObjects request, S3's limit


def is_s3(path: str) -> bool:
    return path.startswith(SCHEME)


def split(url: str) -> tuple[str, str]:
    bucket, _, key = url[len(SCHEME) :].partition("/")
    return bucket, key


class ObjectStore:
    """One S3 client for a migration's ``spec.s3`` settings; every failure becomes one line."""

    def __init__(self, settings: S3Settings | None) -> None:
        import boto3
        from botocore.config import Config

        self.settings = settings or S3Settings()
        self.settings.check_credentials()
        addressing = "path" if self.settings.path_style else "auto"
        self.client = boto3.session.Session().client(
            "s3",
            endpoint_url=self.settings.endpoint,
            region_name=self.settings.region,
            verify=self.settings.verify_tls,
            config=Config(s3={"addressing_style": addressing}, retries={"max_attempts": 5, "mode": "standard"}),
        )

    @property
    def where(self) -> str:
        return self.settings.endpoint or "AWS S3"

    def call(self, what: str, url: str, fn: Callable[..., Any], **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError, NoCredentialsError

        try:
            return fn(**kwargs)
        except ClientError as error:
            raise self._explain(error, what, url) from None
        except NoCredentialsError:
            raise InputError(
                f"no S3 credentials found to {what} {url}",
                "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a shared config profile, or spec.s3 secret references",
            ) from None
        except EndpointConnectionError as error:
            raise TransientError(
                f"cannot reach S3 at {self.where} to {what} {url}: {error}", "check spec.s3.endpoint and the network"
            ) from None
        except BotoCoreError as error:
            raise InputError(f"S3 failed to {what} {url}: {error}", "check spec.s3 and the path") from None

    def _bucket_missing(self, bucket: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_bucket(Bucket=bucket)
        except ClientError as error:
            return _code(error) in MISSING | {"NoSuchBucket"}
        return False

    def _explain(self, error: ClientError, what: str, url: str) -> InputError:
        code = _code(error)
        bucket, _ = split(url)
        if code == "NoSuchBucket" or (code in MISSING and self._bucket_missing(bucket)):
            return InputError(f"bucket {bucket!r} does not exist at {self.where}", "check the bucket in the s3:// path")
        if code in MISSING:
            return InputError(f"{url} does not exist at {self.where}", "check the s3:// path")
        if code in DENIED:
            return InputError(
                f"S3 at {self.where} refused to let us {what} {url} ({code})",
                "check the credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or spec.s3 secret references) and the bucket policy",
            )
        return InputError(f"S3 at {self.where} failed to {what} {url}: {error}", "check spec.s3 and the path")

    def size(self, url: str) -> int:
        bucket, key = split(url)
        if not key:
            raise InputError(f"{url} names a bucket, not an object", "give the object's key after the bucket")
        return int(self.call("read", url, self.client.head_object, Bucket=bucket, Key=key)["ContentLength"])

    def exists(self, url: str) -> bool:
        return bool(self.call("check", url, lambda: self._head(url)))

    def _head(self, url: str) -> bool:
        from botocore.exceptions import ClientError

        bucket, key = split(url)
        try:
            self.client.head_object(Bucket=bucket, Key=key)
        except ClientError as error:
            if _code(error) in MISSING and not self._bucket_missing(bucket):
                return False
            raise
        return True

    def expand(self, pattern: str) -> list[str]:
        """Objects named by a key, a glob pattern, or a prefix ending in '/' (sorted)."""
        bucket, key = split(pattern)
        if not (glob.has_magic(key) or key.endswith("/") or not key):
            self.size(pattern)
            return [pattern]
        prefix = key[: min((key.index(c) for c in "*?[" if c in key), default=len(key))]
        keys = self.keys(f"{SCHEME}{bucket}/{prefix}")
        chosen = sorted(
            k for k in keys if (fnmatch.fnmatchcase(k, key) if glob.has_magic(key) else not k.endswith("/"))
        )
        if not chosen:
            raise InputError(f"no object matches {pattern}", "check the s3:// path or pattern")
        return [f"{SCHEME}{bucket}/{k}" for k in chosen]

    def keys(self, url: str) -> list[str]:
        """Every key under the URL's key taken as a prefix."""
        bucket, prefix = split(url)
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return [o["Key"] for page in self.call("list", url, lambda: list(pages)) for o in page.get("Contents", [])]

    def delete_prefix(self, url: str) -> int:
        """Delete every object under a prefix (as many per request as S3 takes); returns how many.
        Nothing there is nothing to do."""
        bucket, keys = split(url)[0], self.keys(url)
        for start in range(0, len(keys), DELETE_BATCH):
            chunk = {"Objects": [{"Key": key} for key in keys[start : start + DELETE_BATCH]], "Quiet": True}
            answer = self.call("delete", url, self.client.delete_objects, Bucket=bucket, Delete=chunk)
            if errors := answer.get("Errors"):
                first = errors[0]
                raise InputError(
                    f"S3 at {self.where} refused to delete {SCHEME}{bucket}/{first.get('Key')} ({first.get('Code')})",
                    "grant the credentials s3:DeleteObject on the bucket",
                )
        return len(keys)

    def open(self, url: str) -> RangeReader:
        return RangeReader(self, url, self.size(url), self.settings.block_size_mb << 20)

    def download(self, url: str, path: Path) -> None:
        bucket, key = split(url)
        began = time.monotonic()
        self.call("download", url, self.client.download_file, Bucket=bucket, Key=key, Filename=str(path))
        megabytes = path.stat().st_size / 2**20
        log.info("downloaded %s (%.0f MiB) in %.1fs", url, megabytes, time.monotonic() - began)

    def upload(self, path: Path, url: str) -> None:
        """Multipart upload from the file, streaming: memory is a few parts, not the file."""
        from boto3.s3.transfer import TransferConfig

        bucket, key = split(url)
        parts = TransferConfig(
            multipart_threshold=PART_BYTES, multipart_chunksize=PART_BYTES, max_concurrency=UPLOAD_THREADS
        )
        log.info("uploading %s to %s", path, url)
        self.call("upload", url, self.client.upload_file, Filename=str(path), Bucket=bucket, Key=key, Config=parts)


def staging(url: str) -> Path:
    """Where an s3:// export is written before its upload: named after the URL, so a resumed
    run on the same disk finds it."""
    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / "milvusdm-exports" / digest / url.rsplit("/", 1)[-1]


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


class RangeReader(io.RawIOBase):
    """A read-only, seekable file over one object: ranged GETs of whole blocks, a few cached."""

    def __init__(self, store: ObjectStore, url: str, size: int, block: int) -> None:
        super().__init__()
        self.store, self.url, self.length, self.block = store, url, size, block
        self.bucket, self.key = split(url)
        self.position = 0
        self.blocks: OrderedDict[int, memoryview] = OrderedDict()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.length}[whence]
        self.position = max(0, base + offset)
        return self.position

    def _block(self, number: int) -> memoryview:
        if number in self.blocks:
            self.blocks.move_to_end(number)
            return self.blocks[number]
        # Make room first (never a block more than the cache), dropping the block just before
        # this one if cached: its stream has moved on. Else the least recently used.
        while len(self.blocks) >= CACHED_BLOCKS:
            self.blocks.pop(number - 1) if number - 1 in self.blocks else self.blocks.popitem(last=False)
        first = number * self.block
        last = min(first + self.block, self.length) - 1
        response = self.store.call(
            "read",
            self.url,
            self.store.client.get_object,
            Bucket=self.bucket,
            Key=self.key,
            Range=f"bytes={first}-{last}",
        )
        data = bytearray(last - first + 1)  # filled in place: no joined copy of the body
        view, filled = memoryview(data), 0
        while filled < len(data):
            count = response["Body"].readinto(view[filled : filled + READ_BYTES])
            if not count:
                raise InputError(
                    f"{self.url} ended early at byte {first + filled}", "check that the object was uploaded whole"
                )
            filled += count
        self.blocks[number] = view
        return view

    def readinto(self, buffer: Buffer) -> int:
        view = memoryview(buffer).cast("B")
        done = 0
        while done < len(view) and self.position < self.length:
            number, offset = divmod(self.position, self.block)
            block = self._block(number)
            count = min(len(view) - done, len(block) - offset)
            view[done : done + count] = block[offset : offset + count]
            del block  # a read across a block edge must not hold this block while fetching the next
            done += count
            self.position += count
        return done
