"""${message}"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import entitlements.adapters.sql.types

${imports if imports else ""}

revision, down_revision = ${repr(up_revision)}, ${repr(down_revision)}
% if branch_labels:
branch_labels = ${repr(branch_labels)}
% endif
% if depends_on:
depends_on = ${repr(depends_on)}
% endif


def upgrade() -> None:
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    ${downgrades if downgrades else "pass"}
