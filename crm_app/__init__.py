"""A CRM that tells a sales rep what to do right now."""
