"""Audio for legs that take one mixed stream (SIP phones): codecs, jitter buffer, mix-minus, DTMF.

Import from the modules themselves (`codecs`, `conference`, `jitter`, `mixer`, `resample`,
`telephone_event`, `tone`, `g711`): this file imports nothing, so the light ones (`tone`,
`telephone_event`) do not load the codecs' libraries.
"""
