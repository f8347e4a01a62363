variable "VERSION" { default = null }
target "_base" {
  args = { KEEP = "from-base", OVERRIDE = "base" }
}
target "default" {
  inherits = ["_base"]
  args = {
    VERSION  = VERSION  # null: the Dockerfile's ARG default applies
    KEEP     = null     # null does not erase what a parent set
    OVERRIDE = "child"
  }
}
