"""Privacy's errors: each names what to fix."""


class PrivacyError(RuntimeError):
    """Masking, forgetting or retention cannot go on."""


class PrivacySettingsError(PrivacyError, ValueError):
    """The `masking:` or `retention:` block of the settings file is invalid: the message names the key."""


class MaskingKeyMissingError(PrivacyError):
    """Masking is on but the secret the pseudonyms are keyed with is not in the environment."""


class ForgetConfigError(PrivacyError, ValueError):
    """The forget job's config is invalid: the message names the key and what is expected."""
