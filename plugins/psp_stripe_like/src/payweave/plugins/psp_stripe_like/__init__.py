"""PSP plugin for Stripe-shaped APIs, with a Stripe-shaped sandbox server."""
