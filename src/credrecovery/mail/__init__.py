"""The mail concern: headers, templates and catalogs, the renderer and the composer."""
