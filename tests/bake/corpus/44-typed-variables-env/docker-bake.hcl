# environment values take the variable's declared type, or its default's type
variable "PLATFORMS" {
  type    = list(string)
  default = ["linux/amd64"]
}
variable "PORTS" {
  type    = list(number)
  default = []
}
variable "EXTRA_LABELS" {
  type    = map(string)
  default = {}
}
variable "TAGS" {
  default = ["latest"]
}
target "default" {
  platforms = PLATFORMS
  tags      = [for t in TAGS : "acme/app:${t}"]
  labels    = merge({ ports = join(",", [for p in PORTS : p + 1]) }, EXTRA_LABELS)
}
