# --set on a parent that is not requested reaches the child; annotations append, attest merges by type,
# args without "=" come from the environment, empty output entries are dropped (buildx)
target "base" {
  args   = { V = "1" }
  attest = ["type=provenance,mode=min"]
}
target "app" {
  inherits    = ["base"]
  annotations = ["org.opencontainers.image.title=app"]
  output      = ["", "type=docker"]
}
