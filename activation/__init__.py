"""The activation jobs: lead promotion to sales, audience sync and campaign sync, each sending
through an outbox kept in the jobs' state store."""
