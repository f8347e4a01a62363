variable "TAG" { default = "a" }
target "default" {
  args      = { FROM_A = "1", SHARED = "a" }
  tags      = ["acme/app:${TAG}"]
  platforms = ["linux/amd64"]
  cache-from = ["type=local,src=/a"]
}
