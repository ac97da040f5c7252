/*
 * identity.h
 *		What the identity glue files share: the match keys of
 *		identity_keys.c, used by the bulk import (identity_import.c) for leads
 *		whose stored keys were built by an older key version.
 */
#ifndef LM_IDENTITY_H
#define LM_IDENTITY_H

#include "postgres.h"

/* region used for the phone_key of leadmgmt.lead */
#define LM_LEAD_PHONE_REGION "JP"

/* a match key of the given input, in the current memory context; NULL: no key */
extern text *lm_identity_company_key(text *t);
extern text *lm_identity_email_key(text *t);
extern text *lm_identity_name_key(text *t);
/* unknown region: an error (LM030) when raise_error, else NULL */
extern text *lm_identity_phone_key(text *t, const char *region, bool raise_error);

#endif							/* LM_IDENTITY_H */
