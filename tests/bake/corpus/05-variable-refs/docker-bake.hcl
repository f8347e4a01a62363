variable "MAJOR" { default = "2" }
variable "MINOR" { default = "5" }
variable "VERSION" { default = "${MAJOR}.${MINOR}" }
# a top-level attribute is a variable too
IMAGE = "acme/web"
target "default" {
  tags = ["${IMAGE}:${VERSION}", "${IMAGE}:${MAJOR}"]
  args = { CMD_CONTEXT = BAKE_CMD_CONTEXT }
}
