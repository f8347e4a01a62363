variable "TAG" { default = "b" }
# merged into the same target: maps and cache-from add up, tags and platforms are replaced
target "default" {
  args       = { FROM_B = "1", SHARED = "b" }
  platforms  = ["linux/arm64"]
  cache-from = ["type=local,src=/b"]
}
