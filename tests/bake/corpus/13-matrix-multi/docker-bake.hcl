variable "GO" { default = ["1.21", "1.22"] }
target "build" {
  matrix = {
    go   = GO
    mode = [{ name = "static", cgo = "0" }, { name = "dynamic", cgo = "1" }]
  }
  name = "build-${replace(go, ".", "-")}-${mode.name}"
  args = {
    GO_VERSION  = go
    CGO_ENABLED = mode.cgo
  }
}
group "default" { targets = ["build"] }
