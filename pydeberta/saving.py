"""Writing a folder all or nothing: what ``save_pretrained`` writes replaces the folder's files only
once every file is complete, so a failure (a full disk, a refused write) leaves the folder as it was."""

import contextlib
import os
import uuid

import safetensors


@contextlib.contextmanager
def atomic_files(folder, caller="save_pretrained"):
    """Inside the block, ``target(name)`` gives a temporary path in ``folder`` to write ``name``
    to; when the block ends normally every one is renamed onto its name (``os.replace``, atomic
    per file on one file system). When it fails the temporaries are removed, the folder's files
    are untouched, and a write failure is raised as ``OSError`` naming the file.

    >>> import tempfile, pathlib
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     with atomic_files(folder) as target:
    ...         _ = pathlib.Path(target("a.txt")).write_text("complete")
    ...     sorted(os.listdir(folder))
    ['a.txt']
    """
    folder = os.fspath(folder)
    if os.path.isfile(folder):
        raise OSError(f"{caller}: {folder!r} is a file, not a folder")
    os.makedirs(folder, exist_ok=True)
    pending = {}  # final path -> temporary path
    tag = uuid.uuid4().hex[:8]

    def target(name):
        final = os.path.join(folder, name)
        pending[final] = os.path.join(folder, f".{name}.{tag}.tmp")
        return pending[final]

    try:
        yield target
        for final, temporary in pending.items():
            os.replace(temporary, final)
    except BaseException as error:
        for temporary in pending.values():
            with contextlib.suppress(OSError):
                os.remove(temporary)
        if isinstance(error, (OSError, safetensors.SafetensorError)):
            where = next(iter(pending), folder) if pending else folder
            raise OSError(f"{caller}: could not write {where!r} ({error}); the folder was left as it was") from error
        raise
