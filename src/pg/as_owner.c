/*
 * as_owner.c
 *		Run the extension's own bookkeeping as the owner of its tables
 *		(as_owner.h says when and why).
 */
#include "postgres.h"

#include "miscadmin.h"

#include "pg/as_owner.h"

void
lm_as_owner_begin(LmAsOwner *saved, Oid owner, LmOwnerMode mode)
{
	int			sec_context;

	GetUserIdAndSecContext(&saved->saved_userid, &saved->saved_sec_context);
	sec_context = saved->saved_sec_context | SECURITY_LOCAL_USERID_CHANGE;
	if (mode == LM_OWNER_RESTRICTED)
		sec_context |= SECURITY_RESTRICTED_OPERATION;
	SetUserIdAndSecContext(owner, sec_context);
}

void
lm_as_owner_end(const LmAsOwner *saved)
{
	SetUserIdAndSecContext(saved->saved_userid, saved->saved_sec_context);
}
