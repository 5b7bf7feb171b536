"""Microsoft Dynamics 365 Business Central (API v2.0) connector, with a BC sandbox server."""
