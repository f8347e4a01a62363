target "_a" {
  dockerfile = "a.Dockerfile"
  args       = { FROM_A = "a", SHARED = "a" }
  target     = "stage-a"
}
target "_b" {
  dockerfile = "b.Dockerfile"
  args       = { FROM_B = "b", SHARED = "b" }
}
# later parents win over earlier ones, the target itself over both
target "default" {
  inherits = ["_a", "_b"]
  target   = "final"
}
