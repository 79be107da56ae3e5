-- Where each prompt label points now: the latest row of prompt_labels per (tenant, name, label), by
-- Timestamp then LabelId (the earlier rows are the audit of its moves). tenant_id '' is the shared label;
-- a tenant's own label of the same name wins over it (GET /v1/prompts/NAME?label=L).
CREATE OR REPLACE VIEW prompt_labels_current AS
SELECT
    CAST(TenantId, 'String') AS tenant_id,
    Name AS name,
    Label AS label,
    argMax(Version, (Timestamp, LabelId)) AS version,
    argMax(VersionNumber, (Timestamp, LabelId)) AS version_number,
    argMax(MovedBy, (Timestamp, LabelId)) AS moved_by,
    max(Timestamp) AS moved_at
FROM prompt_labels
GROUP BY TenantId, Name, Label;
