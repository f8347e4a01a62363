target "_base" {
  args      = { BASE = "debian", KEEP = "base" }
  labels    = { "org.opencontainers.image.vendor" = "acme" }
  platforms = ["linux/amd64"]
}
target "_lang" {
  inherits = ["_base"]
  args     = { BASE = "python", LANG = "3.12" }
}
target "default" {
  inherits  = ["_lang"]
  args      = { APP = "web" }
  platforms = ["linux/amd64", "linux/arm64"]
  tags      = ["acme/web"]
}
