/** How long what the authorization server hands out stays good, and how many tries a sign-in gets. */

export const ACCESS_TOKEN_SECONDS = 7200;
export const REFRESH_TOKEN_SECONDS = 90 * 24 * 3600;
export const CODE_SECONDS = 600;
export const AUTHZ_REQUEST_SECONDS = 600;
/** Wrong passwords after which one sign-in request ends. */
export const AUTHZ_REQUEST_FAILURES = 5;
