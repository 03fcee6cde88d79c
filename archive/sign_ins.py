"""Sign-in links used already: each works once. A link's id is kept until it expires."""

from datetime import datetime

from sqlalchemy import Engine, delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from archive.schema import UsedSignInRow


class SignInStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def use(self, token_id: str, expires_at: datetime, now: datetime) -> bool:
        """Record the link ``token_id`` as used; False if it was used before."""
        try:
            with Session(self.engine) as session, session.begin():
                session.execute(delete(UsedSignInRow).where(UsedSignInRow.expires_at < now))
                session.add(UsedSignInRow(token_id=token_id, used_at=now, expires_at=expires_at))
        except IntegrityError:
            return False
        return True
