variable "PUSH" {
  default = false
}
variable "JOBS" {
  default = 1
}
target "default" {
  args = {
    JOBS_PLUS_ONE = JOBS + 1
    MODE          = PUSH ? "release" : "local"
  }
  no-cache = PUSH
}
