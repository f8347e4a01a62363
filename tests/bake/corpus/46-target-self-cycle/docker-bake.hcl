# reading the attribute being defined is a real cycle
target "default" {
  args = { V = "1" }
  tags = concat(["a:${target.default.args.V}"], target.default.tags)
}
