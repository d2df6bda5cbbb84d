"""Static files storage for production."""

from whitenoise.storage import CompressedManifestStaticFilesStorage


class StaticStorage(CompressedManifestStaticFilesStorage):
    """Hashed, compressed static files, with ES module imports rewritten to the hashed names too.

    chat.js imports view.js and outbox.js: without the rewrite a browser could
    run a new chat.js with an old, still cached view.js after a deploy.
    """

    support_js_module_import_aggregation = True
