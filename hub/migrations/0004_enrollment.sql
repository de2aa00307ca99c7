-- Senior-high schools a province has permitted to enroll junior-high graduates of other
-- provinces (毕业后跨省就学权限, [003 Q37]); kept by the provinces through enrollment.permit.
CREATE TABLE enrollment_permission (
    school     text        PRIMARY KEY REFERENCES school (code),
    province   text        NOT NULL,
    granted_at timestamptz NOT NULL DEFAULT now()
);
