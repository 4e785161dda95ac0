"""How names are written in messages and figures (no torch: the report and the plots use it)."""

GREEK = dict(zip(("alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda",
                  "mu", "nu", "xi", "omicron", "pi", "rho", "sigma", "tau", "upsilon", "phi", "chi", "psi", "omega"),
                 "αβγδεζηθικλμνξοπρστυφχψω"))


def symbol(name):
    """How a name is written in messages and figures: Greek letter names as letters (``nu`` → ν, ``lambda1`` →
    λ1), others as they are."""
    stem = name.rstrip("0123456789")
    return GREEK.get(stem, stem) + name[len(stem):]
