variable "ENV" {
  default = "dev"
  validation {
    condition     = contains(["dev", "staging", "prod"], ENV)
    error_message = "ENV must be dev, staging or prod"
  }
}
target "default" {
  args = { ENV = ENV }
}
