//! The data plane: journal shipping, following, acknowledgements, commit and promotion.
