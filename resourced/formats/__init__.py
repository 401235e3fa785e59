"""The site's date formats (settings.FORMAT_MODULE_PATH), over Django's for the language."""
