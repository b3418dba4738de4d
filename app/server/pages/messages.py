"""What each sign-in failure tells the person: a heading, what happened, what to do next."""

from __future__ import annotations

START_AGAIN = "Start the login again on your device (for example run `tailscale up` again) and open the new link."
ASK_ADMIN = "If this keeps happening, tell the administrator of this server; its log says more."

# reason -> (heading, message, next step)
FAILURES: dict[str, tuple[str, str, str]] = {
    "invalid_id": ("This link is not valid",
                   "The address does not contain a valid login request.", START_AGAIN),
    "unknown_request": ("This login request has expired",
                        ("The request this link belongs to is unknown here: it expired, was already "
                         "completed, or the server restarted."), START_AGAIN),
    "unavailable": ("Sign-in is unavailable right now",
                    "The identity provider of this server does not answer, so nobody can sign in at the moment.",
                    "Try again in a minute. " + ASK_ADMIN),
    "bad_callback": ("The sign-in did not finish",
                     "The identity provider sent you back without a sign-in result.", START_AGAIN),
    "state_mismatch": ("This sign-in could not be verified",
                       "This browser did not start this sign-in, or its cookies were blocked or cleared.",
                       "Open the link your device shows in this browser, with cookies enabled. " + START_AGAIN),
    "nonce_mismatch": ("This sign-in could not be verified",
                       "The identity provider's answer does not belong to the sign-in this browser started.",
                       START_AGAIN),
    "replayed": ("This sign-in was already used",
                 "Each sign-in can be completed once, and this one was already completed or has expired.",
                 START_AGAIN),
    "provider_error": ("Sign-in was cancelled",
                       "The identity provider did not sign you in (access was denied or cancelled).",
                       "Start again and allow the sign-in at your identity provider. " + START_AGAIN),
    "provider_refused": ("The identity provider refused this sign-in",
                         ("The identity provider did not accept this server's sign-in request; this is a "
                         "configuration problem (client, redirect URL, scopes or PKCE settings)."),
                         "Tell the administrator of this server; its log names the provider's error code."),
    "exchange_failed": ("Sign-in failed",
                        "The identity provider refused to complete the sign-in.", START_AGAIN + " " + ASK_ADMIN),
    "token_invalid": ("This sign-in could not be verified",
                      "The identity provider's answer did not pass verification.", ASK_ADMIN),
    "denied_group": ("Your account is not allowed here",
                     "Your account is not in any of the groups allowed to use this network.",
                     "Ask the administrator to add you to an allowed group, or sign in with another account."),
    "denied_domain": ("Your account is not allowed here",
                      "Accounts from your e-mail domain may not use this network.",
                      "Sign in with an account from an allowed domain, or ask the administrator."),
    "denied_user": ("Your account is not allowed here",
                    "Your account is not on the list of accounts allowed to use this network.",
                    "Ask the administrator to allow your account, or sign in with another one."),
    "denied_unverified_email": ("Your e-mail address is not verified",
                                ("This server only admits accounts whose e-mail address the identity "
                                 "provider has verified."),
                                "Verify your e-mail address with your identity provider, then start again."),
    "user_refused": ("Your account cannot be used here",
                     "The identity provider sent no user name or verified e-mail address this server can use.",
                     ASK_ADMIN),
    "not_owner": ("Only the machine's owner can approve this",
                  "You signed in as someone who does not own the machine that started this SSH session.",
                  "Sign in as the owner of that machine, or ask them to approve it."),
    "denied_console": ("Your account may not use the console",
                       "The web console admits only the accounts listed as its administrators.",
                       "Sign in with an administrator account, or ask to be added to console.oidc_admins."),
    "csrf": ("This confirmation could not be verified",
             "The confirmation form does not belong to this browser's sign-in.", START_AGAIN),
}


def failure(reason: str) -> tuple[str, str, str]:
    return FAILURES.get(reason, ("Sign-in failed", "Something went wrong during the sign-in.",
                                 START_AGAIN + " " + ASK_ADMIN))
