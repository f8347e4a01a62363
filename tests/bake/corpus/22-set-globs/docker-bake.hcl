group "default" { targets = ["app", "app-debug", "tool"] }
target "app" {
  args = { VERSION = "1" }
  tags = ["acme/app"]
  platforms = ["linux/amd64"]
}
target "app-debug" {
  inherits = ["app"]
  target   = "debug"
}
target "tool" {
  tags = ["acme/tool"]
}
