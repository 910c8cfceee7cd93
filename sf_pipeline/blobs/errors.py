"""The blob store's errors: each names what to fix."""


class BlobError(RuntimeError):
    """A blob could not be stored or read."""


class BlobMissingError(BlobError, KeyError):
    """The store holds no blob with this hash (removed by hand, or never completely written)."""

    def __str__(self) -> str:  # KeyError quotes its argument otherwise
        return str(self.args[0]) if self.args else "blob missing"


class BlobSettingsError(BlobError, ValueError):
    """The `blobs:` block of the settings file is invalid: the message names the key."""
